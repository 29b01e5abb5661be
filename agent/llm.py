"""Async client for the multimodal LLM behind an OpenAI-compatible endpoint (vLLM, or any other).

:class:`LLMClient` wraps :class:`openai.AsyncOpenAI` with

* its own retry loop (exponential backoff with jitter, ``Retry-After`` honoured) on HTTP 408/429/5xx,
  timeouts and connection errors -- the SDK's retries are switched off so every attempt is logged
  and tests can count them; other 4xx fail at once;
* :class:`~sam3_core.errors.RunFailed` with a ``cause`` (``llm_unavailable``, ``llm_timeout``,
  ``llm_rate_limited``, ``llm_rejected``, ``llm_context_overflow``, ``llm_bad_response``) and a
  message naming the endpoint when a call cannot be completed;
* both tool-call protocols of :mod:`agent.tool_protocol`, returning an :class:`LLMReply`;
* cumulative :class:`Usage` (tokens, calls, retries), safe to share between many coroutines.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import openai

from agent import reply_limits
from agent import tool_protocol as tp
from agent.image_urls import ImageLike, image_part
from agent.llm_config import LLMConfig
from sam3_core.errors import ModelRetry, RunFailed

__all__ = ["LLMClient", "LLMConfig", "LLMReply", "Usage"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
_RETRYABLE_STATUS = frozenset({408, 429})


@dataclass
class Usage:
    """Token and call counts; ``retries`` counts failed attempts that were retried."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    retries: int = 0
    failures: int = 0

    def add(self, other: Usage) -> None:
        """Add ``other``'s counts to this one."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class LLMReply:
    """One assistant turn.

    ``message`` is the assistant message to append to the history as is. ``text`` is the visible
    text (reasoning and call markup removed), ``content`` the raw content. ``tool_calls`` holds at
    most one call (later ones are counted in ``ignored_calls``). ``tool_error`` is set when the call
    could not be parsed or validated: show it to the model (see
    :func:`agent.tool_protocol.tool_result_messages`) and let it try again.
    """

    text: str
    content: str
    tool_calls: list[tp.ToolCall]
    message: dict[str, Any]
    usage: Usage
    finish_reason: str | None = None
    reasoning: str = ""
    ignored_calls: int = 0
    tool_error: ModelRetry | None = None
    latency_s: float = 0.0

    @property
    def tool_call(self) -> tp.ToolCall | None:
        """The call to execute, or None."""
        return self.tool_calls[0] if self.tool_calls else None


# --------------------------------------------------------------------------- images


# --------------------------------------------------------------------------- failures


@dataclass(frozen=True)
class _Failure:
    retryable: bool
    cause: str
    detail: str
    retry_after: float | None = None


def _status_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if message:
            return f"HTTP {exc.status_code}: {message}"
    return f"HTTP {exc.status_code}: {exc.message}"


def _classify(exc: openai.APIError, timeout_s: float) -> _Failure:
    """Decide whether an SDK error is worth retrying and what to call it."""
    if isinstance(exc, openai.APITimeoutError):
        return _Failure(True, "llm_timeout", f"no response within {timeout_s:g}s")
    if isinstance(exc, openai.APIConnectionError):
        return _Failure(True, "llm_unavailable", f"connection failed ({exc.__cause__ or exc})")
    if isinstance(exc, openai.APIStatusError):
        status, detail = exc.status_code, _status_detail(exc)
        if status in _RETRYABLE_STATUS or status >= 500:
            retry_after = None
            with contextlib.suppress(ValueError):
                retry_after = float(exc.response.headers.get("retry-after", ""))
            cause = "llm_rate_limited" if status == 429 else "llm_unavailable"
            return _Failure(True, cause, detail, retry_after)
        lowered = detail.lower()
        if "context length" in lowered or "maximum context" in lowered or "too long" in lowered:
            return _Failure(False, "llm_context_overflow", detail)
        return _Failure(False, "llm_rejected", detail)
    return _Failure(False, "llm_bad_response", str(exc))


def _hint(failure: _Failure, config: LLMConfig) -> str:
    """A suggestion of what to check, for failures a person must fix."""
    detail = failure.detail
    if detail.startswith(("HTTP 401", "HTTP 403")):
        return " Check the API key (LLMConfig.api_key or OPENAI_API_KEY)."
    if detail.startswith("HTTP 404"):
        return f" Check base_url (usually ends in /v1) and the model name (GET {config.base_url}/models)."
    if "tool" in detail.lower() and config.tool_protocol == "native":
        return (
            " Native tool calling needs vLLM started with --enable-auto-tool-choice --tool-call-parser "
            "<parser for the model>; or use tool_protocol='text', which needs no server flags."
        )
    if detail.startswith("connection failed"):
        return " Is the server running and reachable at that address?"
    if detail.startswith("HTTP 5"):
        return " The server reported an error; see its log."
    return ""


# --------------------------------------------------------------------------- replies


def _history_entry(call: tp.ToolCall) -> dict[str, Any]:
    """The ``tool_calls`` entry of an assistant message (arguments re-serialised as valid JSON)."""
    function = {"name": call.name, "arguments": json.dumps(call.arguments)}
    return {"id": call.id, "type": "function", "function": function}


def _native_call(raw: Any) -> tuple[tp.ToolCall, ModelRetry | None]:
    """Decode one entry of ``message.tool_calls``; bad arguments give an empty call and the error."""
    name, arguments = raw.function.name or "", raw.function.arguments or "{}"
    try:
        call = tp.call_from_object({"name": name, "arguments": arguments})
    except ModelRetry:
        error = ModelRetry(
            f"The arguments of your call to {name!r} are not a JSON object: {arguments[:200]!r}. "
            "Call the tool again with its arguments as one valid JSON object."
        )
        return tp.ToolCall(name=name, arguments={}, id=raw.id or f"call_{id(raw):x}"), error
    return tp.ToolCall(name=call.name, arguments=call.arguments, id=raw.id or call.id), None


def _build_reply(choice: Any, protocol: tp.Protocol, specs: Sequence[tp.ToolSpec]) -> LLMReply:
    """Turn the first choice of a completion into an :class:`LLMReply` (usage filled in by the caller).

    In native mode a reply without ``tool_calls`` is still searched for a text-protocol call: when
    the server's parser misses a call, it arrives as plain content.
    """
    message = choice.message
    content = message.content or ""
    native = [c for c in (message.tool_calls or []) if getattr(c, "function", None) is not None]
    visible, reasoning = tp.split_reasoning(content)
    calls: list[tp.ToolCall] = []
    error: ModelRetry | None = None
    ignored = 0
    if protocol == "native" and native:
        call, error = _native_call(native[0])
        calls, ignored = [call], len(native) - 1
    else:
        try:
            parsed = tp.parse_text_reply(content, specs)
            visible, ignored = parsed.text, parsed.ignored_calls
            calls = [parsed.call] if parsed.call else []
        except ModelRetry as exc:
            error = exc
    if ignored:
        logger.warning("model made %d tool calls; using the first (%s)", ignored + 1, calls[0].name)
    if calls and error is None and specs:
        try:
            calls = [tp.validate_call(calls[0], specs)]
        except ModelRetry as exc:
            error = exc
    history: dict[str, Any] = {"role": "assistant", "content": content}
    if protocol == "native" and calls:
        history["tool_calls"] = [_history_entry(calls[0])]
        if not native:  # the call was written as text: keep only the prose around it
            history["content"] = visible
    server_reasoning = getattr(message, "reasoning_content", None) or getattr(message, "reasoning", None)
    return LLMReply(
        text=visible,
        content=content,
        tool_calls=calls,
        message=history,
        usage=Usage(calls=1),
        finish_reason=choice.finish_reason,
        reasoning="\n".join(r for r in (server_reasoning or "", reasoning) if r),
        ignored_calls=ignored,
        tool_error=error,
    )


def _with_tools_text(messages: Sequence[dict], specs: Sequence[tp.ToolSpec]) -> list[dict]:
    """A copy of ``messages`` whose system message ends with the text-mode tool description."""
    tools_text = tp.render_tools_text(specs)
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system":
        system = out[0]["content"]
        if isinstance(system, str):
            out[0]["content"] = f"{system}\n\n{tools_text}" if system else tools_text
        else:
            out[0]["content"] = [*system, {"type": "text", "text": tools_text}]
    else:
        out.insert(0, {"role": "system", "content": tools_text})
    return out


# --------------------------------------------------------------------------- client


class LLMClient:
    """Async chat client with retries, both tool protocols and usage accounting.

    Use as ``async with LLMClient(config) as llm: reply = await llm.chat(messages, tools)``. One client
    may be shared by any number of coroutines of one event loop.
    """

    def __init__(self, config: LLMConfig | None = None, *, rng: random.Random | None = None,
                 http_client: httpx.AsyncClient | None = None) -> None:
        """``http_client`` replaces the SDK's own (e.g. one over :class:`agent.testing.ScriptedTransport`)."""
        self.config = config or LLMConfig()
        self._openai = openai.AsyncOpenAI(
            base_url=self.config.base_url,
            api_key=self.config.api_key,
            timeout=self.config.timeout_s,
            max_retries=0,
            # A caller's client (tests: agent.testing.ScriptedModel) is used as given; the default one
            # bounds every response body (agent.reply_limits).
            http_client=http_client or reply_limits.bounded_http_client(self.config),
        )
        self._usage = Usage()
        self._usage_lock = threading.Lock()
        self._rng = rng or random.Random()
        self._model = self.config.model or None
        self._model_lock = asyncio.Lock()
        limit = self.config.max_concurrency
        self._slots = asyncio.Semaphore(limit) if limit else None

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the underlying HTTP connections."""
        await self._openai.close()

    @property
    def usage(self) -> Usage:
        """A snapshot of the cumulative usage of this client."""
        with self._usage_lock:
            return dataclasses.replace(self._usage)

    def _record(self, usage: Usage) -> None:
        with self._usage_lock:
            self._usage.add(usage)

    def scoped(self) -> ScopedClient:
        """A view of this client that counts its own usage (one per query); see :class:`ScopedClient`."""
        return ScopedClient(self)

    def image_part(self, image: ImageLike) -> dict[str, Any]:
        """An ``image_url`` content part within this client's pixel budget and format."""
        return image_part(image, self.config.image_max_pixels, self.config.image_format)

    async def model_name(self) -> str:
        """The configured model, or the first one the endpoint lists (looked up once)."""
        if self._model:
            return self._model
        async with self._model_lock:
            if not self._model:
                page = await self._with_retries(
                    lambda: reply_limits.readable(self._openai.models.list(), self.config.base_url), Usage(),
                    "list its models")
                if not page.data:
                    url = self.config.base_url
                    raise RunFailed(f"LLM endpoint {url} serves no models", cause="llm_bad_response")
                self._model = page.data[0].id
                logger.info("using model %s served at %s", self._model, self.config.base_url)
        return self._model

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        cfg = self.config
        base = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2 ** (attempt - 1))
        delay = base / 2 + self._rng.uniform(0, base / 2)
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, cfg.backoff_max_s))
        return delay

    async def _with_retries(self, op: Callable[[], Awaitable[T]], usage: Usage, what: str) -> T:
        """Run ``op`` with retries; count retries in ``usage``; raise RunFailed when it cannot succeed."""
        cfg = self.config
        attempts = cfg.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return await op()
            except openai.APIError as exc:
                failure = _classify(exc, cfg.timeout_s)
                if not failure.retryable or attempt == attempts:
                    usage.failures += 1
                    self._record(usage)
                    tries = f" after {attempt} attempt(s)" if failure.retryable else ""
                    raise RunFailed(
                        f"LLM endpoint {cfg.base_url} failed to {what} (model {self._model or '?'}){tries}: "
                        f"{failure.detail}.{_hint(failure, cfg)}",
                        cause=failure.cause,
                    ) from exc
                delay = self._backoff(attempt, failure.retry_after)
                usage.retries += 1
                # INFO, not WARNING: a retry that succeeds is routine, and a final failure is raised with the
                # URL and the attempts made, so the caller reports an unreachable endpoint once.
                logger.info(
                    "LLM %s at %s failed (%s); retry %d/%d in %.2fs",
                    what, cfg.base_url, failure.detail, attempt, cfg.max_retries, delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def chat(
        self,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[tp.ToolSpec | tuple] | None = None,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> LLMReply:
        """Send one chat request and parse the reply with the configured tool protocol.

        In text mode the tool description is appended to the system message of the *request*
        (``messages`` is not modified). Tool calls are validated against ``tools``; problems are
        reported in ``LLMReply.tool_error``, never raised. Raises :class:`RunFailed` when the
        endpoint cannot answer.
        """
        cfg = self.config
        specs = tp.as_specs(tools or [])
        request = self._request(messages, specs, temperature, max_tokens)
        request["model"] = await self.model_name()
        usage = Usage(calls=1)
        started = time.perf_counter()
        async with self._slots or contextlib.nullcontext():
            completion = await self._with_retries(
                lambda: reply_limits.readable(self._openai.chat.completions.create(**request), cfg.base_url),
                usage, "answer a chat request",
            )
        try:  # bounded, checked and parsed off the event loop (see agent.reply_limits)
            reply_limits.count_usage(completion, usage, cfg.base_url)
            reply = await asyncio.to_thread(reply_limits.read_choice, completion, cfg, specs, _build_reply)
        except RunFailed:
            usage.failures += 1
            raise
        finally:
            self._record(usage)
        reply.usage, reply.latency_s = usage, time.perf_counter() - started
        if reply.finish_reason == "length":
            logger.warning("LLM reply was cut at max_tokens=%s", request["max_tokens"])
        return reply

    def _request(
        self, messages: Sequence[dict], specs: list[tp.ToolSpec], temperature: float | None, max_tokens: int | None
    ) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` (without the model)."""
        cfg = self.config
        text_tools = specs and cfg.tool_protocol == "text"
        request: dict[str, Any] = {
            "messages": _with_tools_text(messages, specs) if text_tools else list(messages),
            "temperature": cfg.temperature if temperature is None else temperature,
            "max_tokens": cfg.max_tokens if max_tokens is None else max_tokens,
        }
        if specs and cfg.tool_protocol == "native":
            request["tools"] = tp.to_openai_tools(specs)
        if cfg.extra_body:
            request["extra_body"] = dict(cfg.extra_body)
        return request


class ScopedClient(LLMClient):
    """One query's view of a shared :class:`LLMClient`: the same connection, its own usage counts.

    Many queries share one client (an evaluation run, a server); each gets a scoped view from
    :meth:`LLMClient.scoped` so that its calls and tokens (and its token budget) are its own while all
    requests still go through the shared connection pool and concurrency limit.
    """

    def __init__(self, shared: LLMClient) -> None:  # no super().__init__(): nothing of its own to open
        self.config = shared.config
        self._shared = shared
        self._own = Usage()

    @property
    def usage(self) -> Usage:
        """Calls and tokens of this query so far."""
        return dataclasses.replace(self._own)

    async def model_name(self) -> str:
        return await self._shared.model_name()

    async def chat(self, messages: Sequence[dict[str, Any]], tools: Sequence[Any] | None = None,
                   **kwargs: Any) -> LLMReply:
        """:meth:`LLMClient.chat` on the shared client, counted for this query."""
        try:
            reply = await self._shared.chat(messages, tools, **kwargs)
        except RunFailed:
            self._own.add(Usage(calls=1, failures=1))
            raise
        self._own.add(reply.usage)
        return reply

    async def aclose(self) -> None:
        """Nothing to close: the shared client belongs to the caller."""
