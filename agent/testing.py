"""A scripted OpenAI-compatible chat server for tests: real HTTP on 127.0.0.1, standard library only.

It answers ``POST /v1/chat/completions`` (non-streaming) and ``GET /v1/models``. Each chat request
gets the next :class:`Reply` of the script, or whatever ``responder(body)`` returns (None: fall back
to the script), so concurrent requests can be answered by their content. Every request body is
recorded. When the script runs out the server answers HTTP 500 and records the problem in
:attr:`ScriptedLLM.errors`. Typical use::

    with ScriptedLLM([Reply.call("segment_phrase", text_prompt="cat"), Reply.text("done")]) as server:
        config = LLMConfig(base_url=server.base_url, model=server.model)
        ...
    assert len(server.requests) == 2

The project's tests wrap it in a pytest fixture (``tests/conftest.py``); users can do the same: start an
empty server, add replies with :meth:`ScriptedLLM.add`, and check :attr:`ScriptedLLM.errors` at the end.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)


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
        """A native tool call (``message.tool_calls``)."""
        return cls(tool_calls=[{"name": name, "arguments": arguments, "id": _id}])

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


class _Server(ThreadingHTTPServer):
    """A listen backlog like a real server's: the default of 5 drops connections when many verification
    calls arrive at once, and the client then waits a second to retry."""

    request_queue_size = 1024
    daemon_threads = True


class ScriptedLLM:
    """The scripted server; a context manager (``start``/``stop``). Thread-safe."""

    def __init__(
        self,
        script: Iterable[Reply | str] = (),
        *,
        responder: Callable[[dict[str, Any]], Reply | str | None] | None = None,
        model: str = "scripted-model",
    ) -> None:
        self.model = model
        self.responder = responder
        self._script: deque[Reply] = deque()
        self._requests: list[dict[str, Any]] = []
        self._errors: list[str] = []
        self._headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self.add(*script)

    # ------------------------------------------------------------------ script and records

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
        """Problems the server met (script exhausted, responder crashed, bad request JSON)."""
        with self._lock:
            return list(self._errors)

    @property
    def remaining(self) -> int:
        """Replies not yet consumed."""
        with self._lock:
            return len(self._script)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1`` of the server (kept after ``stop`` for assertions)."""
        if self._port is None:
            raise RuntimeError("ScriptedLLM was never started")
        return f"http://127.0.0.1:{self._port}/v1"

    def _handle(self, raw: bytes, headers: dict[str, str]) -> Reply:
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
        logger.error("ScriptedLLM: %s", problem)
        with self._lock:
            self._errors.append(problem)
        return Reply.error(500, f"ScriptedLLM: {problem}")

    # ------------------------------------------------------------------ lifecycle

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

    def _send(self, status: int, payload: dict | str, headers: dict[str, str] | None = None) -> None:
        data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            logger.debug("ScriptedLLM: client closed the connection before the reply")

    def _not_found(self) -> None:
        self._send(404, {"error": {"message": f"no route {self.command} {self.path}", "type": "not_found"}})

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            self._not_found()
            return
        model = {"id": self.scripted.model, "object": "model", "created": 0, "owned_by": "scripted"}
        self._send(200, {"object": "list", "data": [model]})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._not_found()
            return
        reply = self.scripted._handle(raw, {k.lower(): v for k, v in self.headers.items()})
        if reply.delay_s and self.scripted._stopping.wait(reply.delay_s):
            return  # the server is stopping: abandon the delayed reply
        if reply.status != 200:
            error = {"message": reply.error_message, "type": "scripted_error", "code": reply.status}
            self._send(reply.status, reply.raw_body or {"error": error}, reply.headers)
        else:
            self._send(200, reply.raw_body or completion_body(reply, self.scripted.model), reply.headers)


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
