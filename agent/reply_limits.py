"""Bounds on what one LLM response may bring into the agent: body bytes, reply bytes, token counts.

Every response is treated as hostile input:

* **HTTP body** -- :class:`BoundedTransport` stops reading a response body past
  :func:`body_limit` bytes (16x ``LLMConfig.max_reply_bytes``, at least 1 MiB) and asks for no
  compression, so a few compressed bytes cannot expand into gigabytes. Such a body, and a 200 body
  that is not JSON, fail the call with cause ``llm_bad_response`` (:func:`readable`; never retried).
* **Reply** -- :func:`read_choice` (run in a worker thread, off the event loop) checks the reply's
  shape (a ``message`` object whose ``content`` is text) and its size: content, tool-call arguments
  and reasoning over ``LLMConfig.max_reply_bytes`` are not parsed; the model gets a retry message
  instead and only the reply's first :data:`KEPT_CHARS` characters are kept in the conversation.
* **Token counts** -- :func:`count_usage` refuses negative, non-integer and absurd counts (more
  than :data:`MAX_TOKENS_PER_CALL`), so a lying endpoint cannot dodge the token budget, and takes the
  larger of ``total_tokens`` and prompt + completion.

A malformed response ends the query as ``failed`` with cause ``llm_bad_response``; an over-long
reply is a model mistake (``ModelRetry``), counted against ``AgentSettings.max_retries``.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from types import SimpleNamespace
from typing import Any, TypeVar

import openai

from agent.llm_config import LLMConfig
from sam3_core.errors import ModelRetry, RunFailed

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _sdk_http_module() -> Any:
    """The HTTP library the OpenAI SDK is built on (``httpx``, or ``httpx2`` in newer SDKs)."""
    base = next(c for c in openai.DefaultAsyncHttpxClient.__mro__ if c.__name__ == "AsyncClient")
    return importlib.import_module(base.__module__.split(".")[0])


httpx = _sdk_http_module()

#: Characters of an over-long reply kept in the conversation (the model sees where it went wrong).
KEPT_CHARS = 2000
#: The most tokens one call may report (prompt or completion); more is a lie or a bug.
MAX_TOKENS_PER_CALL = 100_000_000
#: The HTTP body limit is this many times ``max_reply_bytes`` (JSON escaping, reasoning, metadata) ...
BODY_FACTOR = 16
#: ... and at least this many bytes.
MIN_BODY_BYTES = 1024 * 1024
#: The connection pool of the SDK's own default client.
_POOL = httpx.Limits(max_connections=1000, max_keepalive_connections=100)


def body_limit(max_reply_bytes: int) -> int:
    """The most bytes of an HTTP response body the client reads."""
    return max(MIN_BODY_BYTES, BODY_FACTOR * max_reply_bytes)


class UnreadableResponse(openai.APIError):
    """A response that cannot be read (body over the limit, compressed against the request, not JSON).

    An SDK error, raised inside the transport too, so the client classifies it ``llm_bad_response``
    and does not retry it.
    """


# --------------------------------------------------------------------------- the HTTP body


class _BoundedStream(httpx.AsyncByteStream):
    """A response stream that raises :class:`UnreadableResponse` once more than ``limit`` bytes arrived."""

    def __init__(self, inner: httpx.AsyncByteStream, limit: int, request: httpx.Request) -> None:
        self._inner, self._limit, self._request = inner, limit, request

    async def __aiter__(self):  # type: ignore[override]
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise UnreadableResponse(f"the response body exceeds {self._limit} bytes; it was not read further",
                                         self._request, body=None)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class BoundedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that asks for uncompressed bodies and reads at most ``limit`` bytes of each."""

    def __init__(self, limit: int, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.limit = limit
        self._inner = inner if inner is not None else httpx.AsyncHTTPTransport(limits=_POOL)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["Accept-Encoding"] = "identity"
        response = await self._inner.handle_async_request(request)
        declared = response.headers.get("content-length", "")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        problem = ""
        if declared.isdigit() and int(declared) > self.limit:
            problem = f"the response body has {declared} bytes, more than the limit of {self.limit}"
        elif encoding not in ("", "identity"):
            problem = f"the response is compressed ({encoding}) although an uncompressed one was asked for"
        if problem:
            await response.aclose()
            raise UnreadableResponse(problem, request, body=None)
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        return httpx.Response(response.status_code, headers=response.headers, extensions=response.extensions,
                              stream=_BoundedStream(stream, self.limit, request), request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def bounded_http_client(config: LLMConfig) -> httpx.AsyncClient:
    """The httpx client for :class:`openai.AsyncOpenAI`: the SDK's defaults, bodies bounded by :func:`body_limit`."""
    return openai.DefaultAsyncHttpxClient(transport=BoundedTransport(body_limit(config.max_reply_bytes)))


async def readable(work: Awaitable[T], url: str) -> T:
    """Await an SDK call; a body over the limit or not JSON becomes :class:`UnreadableResponse`."""
    try:
        return await work
    except openai.APIConnectionError as exc:  # SDKs that wrap every transport error
        if isinstance(exc.__cause__, UnreadableResponse):
            raise exc.__cause__ from None
        raise
    except ValueError as exc:  # json.JSONDecodeError: a 200 whose body is not JSON
        request = httpx.Request("POST", url)
        raise UnreadableResponse(f"the response body is not JSON ({exc})", request, body=None) from exc


# --------------------------------------------------------------------------- token counts


def _count(usage: Any, name: str, url: str) -> int:
    value = getattr(usage, name, None)
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS_PER_CALL:
        raise RunFailed(f"LLM endpoint {url} reported an impossible token count: usage.{name} = {str(value)[:40]} "
                        f"(expected an integer from 0 to {MAX_TOKENS_PER_CALL})", cause="llm_bad_response")
    return value


def count_usage(completion: Any, usage: Any, url: str) -> None:
    """Set ``usage``'s token fields from ``completion.usage`` (missing counts are 0).

    Raises :class:`RunFailed` (``llm_bad_response``) for a negative, non-integer or absurd count.
    """
    reported = getattr(completion, "usage", None)
    if reported is None:
        return
    usage.prompt_tokens = _count(reported, "prompt_tokens", url)
    usage.completion_tokens = _count(reported, "completion_tokens", url)
    # the total may not hide part of the sum
    usage.total_tokens = max(_count(reported, "total_tokens", url), usage.prompt_tokens + usage.completion_tokens)


# --------------------------------------------------------------------------- the reply


def _bad(url: str, what: str) -> RunFailed:
    return RunFailed(f"LLM endpoint {url} sent an unreadable reply: {what}", cause="llm_bad_response")


def _text_size(value: Any) -> int:
    return len(value.encode("utf-8", "replace")) if isinstance(value, str) else 0


def reply_bytes(message: Any) -> int:
    """UTF-8 bytes of a reply message's content, tool-call names and arguments, and reasoning."""
    size = _text_size(getattr(message, "content", None))
    size += sum(_text_size(getattr(message, key, None)) for key in ("reasoning_content", "reasoning"))
    for call in getattr(message, "tool_calls", None) or []:
        function = getattr(call, "function", None)
        size += _text_size(getattr(function, "name", None)) + _text_size(getattr(function, "arguments", None))
    return size


def _check_shape(completion: Any, url: str) -> Any:
    """The first choice of ``completion`` after checking the reply's shape; RunFailed when it is wrong."""
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise _bad(url, "no choices")
    choice = choices[0]
    message = getattr(choice, "message", None)
    if message is None or isinstance(message, (str, int, float, list)):
        shown = "null" if message is None else type(message).__name__
        raise _bad(url, f"choices[0].message is {shown} (expected an object)")
    content = getattr(message, "content", None)
    if content is not None and not isinstance(content, str):
        raise _bad(url, f"message.content is {type(content).__name__} (expected text or null)")
    calls = getattr(message, "tool_calls", None)
    if calls is not None and not isinstance(calls, list):
        raise _bad(url, f"message.tool_calls is {type(calls).__name__} (expected a list)")
    return choice


def _too_long(choice: Any, size: int, config: LLMConfig, build: Callable[..., T]) -> T:
    """The reply of an over-long message: not parsed, cut to :data:`KEPT_CHARS`, with a retry message."""
    content = getattr(choice.message, "content", None) or ""
    cut = content[:KEPT_CHARS] + (" [... cut]" if len(content) > KEPT_CHARS else "")
    stub = SimpleNamespace(message=SimpleNamespace(content=cut, tool_calls=None), finish_reason=choice.finish_reason)
    reply = build(stub, config.tool_protocol, [])
    logger.warning("LLM reply of %d bytes is over max_reply_bytes=%d; asking again", size, config.max_reply_bytes)
    error = ModelRetry(f"Your reply was {size} bytes long, more than the limit of {config.max_reply_bytes} bytes, "
                       "and was not read. Reply briefly: at most a few sentences and exactly one tool call.")
    return dataclasses.replace(reply, text=cut, content=cut, tool_calls=[], tool_error=error,
                               message={"role": "assistant", "content": cut})


def read_choice(completion: Any, config: LLMConfig, specs: Sequence[Any], build: Callable[..., T]) -> T:
    """The :class:`~agent.llm.LLMReply` of ``completion``'s first choice, made by ``build(choice, protocol, specs)``.

    Meant for a worker thread (``asyncio.to_thread``): parsing a long reply must not stall the event loop.
    Raises :class:`RunFailed` (``llm_bad_response``) when the reply has the wrong shape; a reply over
    ``config.max_reply_bytes`` gives a reply with ``tool_error`` set and no call (see the module docstring).
    """
    choice = _check_shape(completion, config.base_url)
    size = reply_bytes(choice.message)
    if size > config.max_reply_bytes:
        return _too_long(choice, size, config, build)
    try:
        return build(choice, config.tool_protocol, specs)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
        raise _bad(config.base_url, f"{type(exc).__name__}: {exc}") from exc
