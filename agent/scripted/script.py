"""The script of the stand-in LLM, shared by both ways of serving it: the replies, the responder, the records of
what was asked, and the answer to one HTTP request (``GET /v1/models``, ``POST /v1/chat/completions``)."""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.scripted.reply import Reply, Responder, completion_body

if TYPE_CHECKING:
    from agent.llm import LLMConfig

logger = logging.getLogger("agent.testing")  # the public module's name: one logger for all the scripted parts


@dataclass(frozen=True)
class Answer:
    """What to send for one request: status, JSON text, extra headers, and how long to wait first."""

    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def _error_json(status: int, message: str, kind: str) -> str:
    return json.dumps({"error": {"message": message, "type": kind, "code": status}})


class Script:
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

    def _route(self, method: str, path: str, raw: bytes, headers: dict[str, str]) -> Answer:
        """The answer to one HTTP request (``path`` without the host, e.g. ``/v1/models``)."""
        path = path.split("?", 1)[0].rstrip("/")
        if method == "GET" and path == "/v1/models":
            model = {"id": self.model, "object": "model", "created": 0, "owned_by": "scripted"}
            return Answer(200, json.dumps({"object": "list", "data": [model]}))
        if method != "POST" or path != "/v1/chat/completions":
            return Answer(404, _error_json(404, f"no route {method} {path}", "not_found"))
        reply = self._pick(raw, headers)
        if reply.status != 200:
            body = reply.raw_body or _error_json(reply.status, reply.error_message, "scripted_error")
        else:
            body = reply.raw_body or json.dumps(completion_body(reply, self.model))
        return Answer(reply.status, body, dict(reply.headers), reply.delay_s)

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
