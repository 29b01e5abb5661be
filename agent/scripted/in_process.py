"""The script served in process (:class:`ScriptedModel`): an httpx transport answers the real ``openai`` client,
so nothing opens a socket and nothing can leak out."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import httpx

from agent.scripted.script import Answer, Script

if TYPE_CHECKING:
    from agent.llm import LLMClient

#: The base URL of every :class:`ScriptedModel` (``.invalid`` never resolves, so nothing can leak out).
IN_PROCESS_BASE_URL = "http://scripted-llm.invalid/v1"


class ScriptedTransport(httpx.AsyncBaseTransport, httpx.BaseTransport):
    """An httpx transport answering from a script; works in ``httpx.AsyncClient`` and ``httpx.Client``.

    A reply's ``delay_s`` is slept; when it is longer than the request's read timeout the transport sleeps
    the timeout and raises :class:`httpx.ReadTimeout`, as a real connection would (the reply is consumed).
    """

    def __init__(self, script: Script) -> None:
        self._script = script

    def _answer(self, request: httpx.Request) -> tuple[Answer, float, bool]:
        headers = {k.lower(): v for k, v in request.headers.items()}
        answer = self._script._route(request.method, request.url.path, request.content, headers)
        read_timeout = (request.extensions.get("timeout") or {}).get("read")
        if read_timeout is not None and answer.delay_s > read_timeout:
            return answer, read_timeout, True
        return answer, answer.delay_s, False

    @staticmethod
    def _response(answer: Answer) -> httpx.Response:
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


class ScriptedModel(Script):
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
