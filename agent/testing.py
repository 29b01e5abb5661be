"""Scripted stand-ins for the multimodal LLM, for the project's tests and benchmarks and for users' own tests.

One script -- a list of :class:`Reply` and/or a ``responder(body)`` that answers a request by its content --
served two ways:

* :class:`ScriptedModel`: in process, no sockets. An httpx transport answers the real ``openai`` client, so
  request building, retries, timeouts and reply parsing of :class:`agent.llm.LLMClient` run as they would
  against a real endpoint. ``model.client()`` gives such a client; pass it wherever an ``LLMClient`` is taken
  (:func:`agent.runner.run_agent`, :func:`eval.runner.run_eval`, ...).
* :class:`ScriptedLLM`: a real OpenAI-compatible HTTP server on 127.0.0.1 (standard library only), for code
  that takes only a URL (the command line, the HTTP API, another process).

Both answer ``POST /v1/chat/completions`` (non-streaming) and ``GET /v1/models``; each chat request gets the
responder's reply or, when it returns None, the next reply of the script. Every request body and its headers
are recorded. When the script runs out (or the responder raises) the request gets HTTP 500 and the problem is
recorded in ``errors``: check that list at the end of a test. Typical use::

    model = ScriptedModel([Reply.text_call("segment_phrase", text_prompt="cat"),
                           Reply.text_call("select_masks_and_return", mask_ids=[1])])
    async with model.client() as llm:
        answer = await run_agent(engine, llm, "cat.jpg", "the cat")
    assert model.remaining == 0 and not model.errors

    with ScriptedLLM(["hello"]) as server:       # the same, over HTTP
        config = server.config()                  # LLMConfig(base_url=server.base_url, model=server.model)

Nothing here imports pytest; the project's fixtures (``scripted_llm``, ``scripted_model``) live in
``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from agent.llm import LLMClient, LLMConfig

logger = logging.getLogger(__name__)

#: The base URL of every :class:`ScriptedModel` (``.invalid`` never resolves, so nothing can leak out).
IN_PROCESS_BASE_URL = "http://scripted-llm.invalid/v1"
Responder = Callable[[dict[str, Any]], "Reply | str | None"]


@dataclass
class Reply:
    """One scripted answer.

    ``status`` other than 200 sends an OpenAI-style error body with ``error_message``. ``delay_s``
    waits before answering (longer than the client's timeout simulates a timeout; the reply is still
    consumed). ``tool_calls`` entries are ``{"name", "arguments" (dict or raw string), "id"?}``.
    ``raw_body`` is sent verbatim instead of a generated body.
    """

    content: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    error_message: str = "scripted error"
    delay_s: float = 0.0
    finish_reason: str | None = None
    prompt_tokens: int = 10
    completion_tokens: int = 5
    headers: dict[str, str] = field(default_factory=dict)
    message_extra: dict[str, Any] = field(default_factory=dict)
    raw_body: str | None = None

    @classmethod
    def text(cls, content: str, **kw: Any) -> Reply:
        """A plain assistant message."""
        return cls(content=content, **kw)

    @classmethod
    def call(cls, name: str, _id: str | None = None, **arguments: Any) -> Reply:
        """A native tool call (``message.tool_calls``; for ``tool_protocol="native"``)."""
        return cls(tool_calls=[{"name": name, "arguments": arguments, "id": _id}])

    @classmethod
    def text_call(cls, name: str, **arguments: Any) -> Reply:
        """A tool call in the text protocol (the default): ``<tool_call>{"name", "arguments"}</tool_call>``."""
        return cls(content=f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>")

    @classmethod
    def error(cls, status: int, message: str = "scripted error", **kw: Any) -> Reply:
        """An HTTP error response."""
        return cls(status=status, error_message=message, **kw)


def _tool_call_json(call: dict[str, Any], index: int) -> dict[str, Any]:
    args = call.get("arguments", {})
    return {
        "id": call.get("id") or f"call_{uuid.uuid4().hex[:8]}_{index}",
        "type": "function",
        "function": {"name": call["name"], "arguments": args if isinstance(args, str) else json.dumps(args)},
    }


def completion_body(reply: Reply, model: str) -> dict[str, Any]:
    """The ``chat.completion`` JSON for a successful scripted reply."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, **reply.message_extra}
    if reply.tool_calls:
        message["tool_calls"] = [_tool_call_json(c, i) for i, c in enumerate(reply.tool_calls)]
    finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }


@dataclass(frozen=True)
class _Answer:
    """What to send for one request: status, JSON text, extra headers, and how long to wait first."""

    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def _error_json(status: int, message: str, kind: str) -> str:
    return json.dumps({"error": {"message": message, "type": kind, "code": status}})


class _Script:
    """The script, the responder and the records, shared by both ways of serving them. Thread-safe."""

    def __init__(self, script: Iterable[Reply | str] = (), *, responder: Responder | None = None,
                 model: str = "scripted-model") -> None:
        self.model = model
        self.responder = responder
        self._script: deque[Reply] = deque()
        self._requests: list[dict[str, Any]] = []
        self._errors: list[str] = []
        self._headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self.add(*script)

    def add(self, *replies: Reply | str) -> None:
        """Append replies to the script (a string is a plain text reply)."""
        with self._lock:
            self._script.extend(Reply.text(r) if isinstance(r, str) else r for r in replies)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Bodies of all chat requests received, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def request_headers(self) -> list[dict[str, str]]:
        """Headers (lower-case names) of all chat requests received, in arrival order (a copy)."""
        with self._lock:
            return list(self._headers)

    @property
    def errors(self) -> list[str]:
        """Problems met (script exhausted, responder crashed, request not JSON); empty when all went well."""
        with self._lock:
            return list(self._errors)

    @property
    def remaining(self) -> int:
        """Replies not yet consumed."""
        with self._lock:
            return len(self._script)

    @property
    def base_url(self) -> str:
        raise NotImplementedError

    def config(self, **overrides: Any) -> LLMConfig:
        """An :class:`~agent.llm.LLMConfig` pointing at this script (``overrides`` are its other fields)."""
        from agent.llm import LLMConfig

        return LLMConfig(**{"base_url": self.base_url, "model": self.model, "api_key": "scripted", **overrides})

    def _route(self, method: str, path: str, raw: bytes, headers: dict[str, str]) -> _Answer:
        """The answer to one HTTP request (``path`` without the host, e.g. ``/v1/models``)."""
        path = path.split("?", 1)[0].rstrip("/")
        if method == "GET" and path == "/v1/models":
            model = {"id": self.model, "object": "model", "created": 0, "owned_by": "scripted"}
            return _Answer(200, json.dumps({"object": "list", "data": [model]}))
        if method != "POST" or path != "/v1/chat/completions":
            return _Answer(404, _error_json(404, f"no route {method} {path}", "not_found"))
        reply = self._pick(raw, headers)
        if reply.status != 200:
            body = reply.raw_body or _error_json(reply.status, reply.error_message, "scripted_error")
        else:
            body = reply.raw_body or json.dumps(completion_body(reply, self.model))
        return _Answer(reply.status, body, dict(reply.headers), reply.delay_s)

    def _pick(self, raw: bytes, headers: dict[str, str]) -> Reply:
        """Record one chat request and pick its reply (responder first, then the script)."""
        try:
            body = json.loads(raw)
        except ValueError:
            return self._fail(f"request body is not JSON: {raw[:100]!r}")
        with self._lock:
            self._requests.append(body)
            self._headers.append(headers)
        if self.responder is not None:
            try:
                chosen = self.responder(body)
            except Exception as exc:  # reported to the client and recorded for the test
                return self._fail(f"responder raised {type(exc).__name__}: {exc}")
            if chosen is not None:
                return Reply.text(chosen) if isinstance(chosen, str) else chosen
        with self._lock:
            if self._script:
                return self._script.popleft()
        return self._fail(f"script exhausted: no reply left for request #{len(self.requests)}")

    def _fail(self, problem: str) -> Reply:
        logger.error("scripted LLM: %s", problem)
        with self._lock:
            self._errors.append(problem)
        return Reply.error(500, f"scripted LLM: {problem}")


# ---------------------------------------------------------------------- in process


class ScriptedTransport(httpx.AsyncBaseTransport, httpx.BaseTransport):
    """An httpx transport answering from a script; works in ``httpx.AsyncClient`` and ``httpx.Client``.

    A reply's ``delay_s`` is slept; when it is longer than the request's read timeout the transport sleeps
    the timeout and raises :class:`httpx.ReadTimeout`, as a real connection would (the reply is consumed).
    """

    def __init__(self, script: _Script) -> None:
        self._script = script

    def _answer(self, request: httpx.Request) -> tuple[_Answer, float, bool]:
        headers = {k.lower(): v for k, v in request.headers.items()}
        answer = self._script._route(request.method, request.url.path, request.content, headers)
        read_timeout = (request.extensions.get("timeout") or {}).get("read")
        if read_timeout is not None and answer.delay_s > read_timeout:
            return answer, read_timeout, True
        return answer, answer.delay_s, False

    @staticmethod
    def _response(answer: _Answer) -> httpx.Response:
        headers = {"content-type": "application/json", **answer.headers}
        return httpx.Response(answer.status, headers=headers, content=answer.body.encode())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        answer, wait_s, timed_out = self._answer(request)
        time.sleep(wait_s)
        if timed_out:
            raise httpx.ReadTimeout("scripted reply slower than the read timeout", request=request)
        return self._response(answer)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        answer, wait_s, timed_out = self._answer(request)
        await asyncio.sleep(wait_s)
        if timed_out:
            raise httpx.ReadTimeout("scripted reply slower than the read timeout", request=request)
        return self._response(answer)


class ScriptedModel(_Script):
    """The script served in process (no sockets, no threads): see the module docstring.

    ``client(**overrides)`` is an :class:`~agent.llm.LLMClient` (close it, e.g. ``async with``) whose
    requests reach this script; ``config()`` its :class:`~agent.llm.LLMConfig`; ``transport()`` the bare
    httpx transport, for ``httpx.Client(transport=...)`` or another OpenAI SDK client. A context manager
    too (nothing to start), so it can replace :class:`ScriptedLLM` in a ``with`` statement.
    """

    @property
    def base_url(self) -> str:
        """:data:`IN_PROCESS_BASE_URL` (requests never leave the process)."""
        return IN_PROCESS_BASE_URL

    def transport(self) -> ScriptedTransport:
        """A new httpx transport answering from this script."""
        return ScriptedTransport(self)

    def http_client(self) -> httpx.AsyncClient:
        """A new ``httpx.AsyncClient`` over :meth:`transport` (for ``openai.AsyncOpenAI(http_client=...)``)."""
        return httpx.AsyncClient(transport=self.transport())

    def client(self, **overrides: Any) -> LLMClient:
        """A new :class:`~agent.llm.LLMClient` for :meth:`config` (``overrides``) over this script."""
        from agent.llm import LLMClient

        return LLMClient(self.config(**overrides), http_client=self.http_client())

    def __enter__(self) -> ScriptedModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


# ---------------------------------------------------------------------- over HTTP


class _Server(ThreadingHTTPServer):
    """A listen backlog like a real server's: the default of 5 drops connections when many verification
    calls arrive at once, and the client then waits a second to retry."""

    request_queue_size = 1024
    daemon_threads = True


class ScriptedLLM(_Script):
    """The script served over HTTP on 127.0.0.1; a context manager (``start``/``stop``). Thread-safe."""

    def __init__(self, script: Iterable[Reply | str] = (), *, responder: Responder | None = None,
                 model: str = "scripted-model") -> None:
        super().__init__(script, responder=responder, model=model)
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1`` of the server (kept after ``stop`` for assertions)."""
        if self._port is None:
            raise RuntimeError("ScriptedLLM was never started")
        return f"http://127.0.0.1:{self._port}/v1"

    def start(self) -> ScriptedLLM:
        """Bind a free port on 127.0.0.1 and serve in a background thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="ScriptedLLM", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; delayed replies still waiting are abandoned."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> ScriptedLLM:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    """Serves one request for the :class:`ScriptedLLM` in ``scripted`` (set per server by a subclass)."""

    scripted: ScriptedLLM

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("ScriptedLLM: " + format, *args)

    def _serve(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer = self.scripted._route(self.command, self.path, raw, headers)
        if answer.delay_s and self.scripted._stopping.wait(answer.delay_s):
            return  # the server is stopping: abandon the delayed reply
        data = answer.body.encode()
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in answer.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            logger.debug("ScriptedLLM: client closed the connection before the reply")

    do_GET = do_POST = _serve


def _make_handler(server: ScriptedLLM) -> type[BaseHTTPRequestHandler]:
    """A request-handler class bound to ``server``."""
    return type("ScriptedLLMHandler", (_Handler,), {"scripted": server})


# ---------------------------------------------------------------------- helpers for assertions


def message_texts(body: dict[str, Any], role: str | None = None) -> list[str]:
    """All text of the request's messages (optionally of one role), one string per message."""
    out = []
    for message in body.get("messages", []):
        if role is not None and message.get("role") != role:
            continue
        content = message.get("content") or ""
        if isinstance(content, list):
            content = "\n".join(p.get("text", "") for p in content if p.get("type") == "text")
        out.append(content)
    return out


def image_urls(body: dict[str, Any]) -> list[str]:
    """The ``image_url`` URLs (usually data URLs) in the request's messages, in order."""
    return [
        part["image_url"]["url"]
        for message in body.get("messages", [])
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if part.get("type") == "image_url"
    ]
