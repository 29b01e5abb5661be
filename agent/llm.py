"""Async client for the multimodal LLM behind an OpenAI-compatible endpoint (vLLM, or any other).

:class:`LLMClient` wraps :class:`openai.AsyncOpenAI` with

* its own retry loop (exponential backoff with jitter, ``Retry-After`` honoured) on HTTP 408/429/5xx,
  timeouts and connection errors -- the SDK's retries are switched off so every attempt is logged
  and tests can count them; other 4xx fail at once (the policy: :mod:`agent.llm_retry`);
* :class:`~sam3_core.errors.RunFailed` with a ``cause`` (``llm_unavailable``, ``llm_timeout``,
  ``llm_rate_limited``, ``llm_rejected``, ``llm_context_overflow``, ``llm_bad_response``) and a
  message naming the endpoint when a call cannot be completed;
* both tool-call protocols of :mod:`agent.tool_protocol`, returning an :class:`LLMReply` (parsed in
  :mod:`agent.llm_reply`);
* cumulative :class:`Usage` (tokens, calls, retries; :mod:`agent.llm_usage`), safe to share between many
  coroutines, and per-query counts through :meth:`LLMClient.scoped`;
* other backends behind the same interface (:mod:`agent.backends`): ``base_url`` may also be
  ``hf:<model>`` (in-process transformers) or ``vllm:<model>`` (in-process vLLM), and ``pool`` adds
  endpoints; constrained tool calls (:mod:`agent.backends.grammar`) unless ``constrained="off"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import httpx
import openai

from agent import reply_limits
from agent import tool_protocol as tp
from agent.backends.requests import about_grammar, call_grammar, server_grammar_fields
from agent.image_urls import ImageLike, image_part
from agent.llm_config import LLMConfig
from agent.llm_reply import LLMReply, with_tools_text
from agent.llm_reply import build_reply as _build_reply  # its old name: a test wraps it, bench/reply_parsing times it
from agent.llm_retry import backoff_delay, classify, failure_message
from agent.llm_usage import Usage
from sam3_core.errors import RunFailed

__all__ = ["LLMClient", "LLMConfig", "LLMReply", "Usage"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


# --------------------------------------------------------------------------- client


class LLMClient:
    """Async chat client with retries, both tool protocols and usage accounting.

    Use as ``async with LLMClient(config) as llm: reply = await llm.chat(messages, tools)``. One client
    may be shared by any number of coroutines of one event loop.
    """

    def __init__(self, config: LLMConfig | None = None, *, rng: random.Random | None = None,
                 http_client: httpx.AsyncClient | None = None) -> None:
        """``http_client`` replaces the SDK's own (e.g. one over :class:`agent.testing.ScriptedTransport`)."""
        from agent.backends import make_backend
        from agent.backends.spec import parse_spec

        config = config or LLMConfig()
        spec = parse_spec(config.base_url) if not config.pool else None
        if spec is not None and spec.kind == "http" and spec.max_in_flight:  # "URL#N": N requests in flight
            config = dataclasses.replace(config, base_url=spec.target, max_concurrency=spec.max_in_flight)
        self.config = config
        self._backend = make_backend(self.config, http_client)  # None: this client is the HTTP backend itself
        mode = self.config.constrained
        self._server_grammar: bool | None = None if mode == "auto" else mode == "on"
        self._openai = openai.AsyncOpenAI(
            base_url=self.config.base_url if self._backend is None else "http://unused.invalid/v1",
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
        """Close the underlying HTTP connections (and the backend's resources)."""
        if self._backend is not None:
            await self._backend.aclose()
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
        if self._backend is not None:
            return await self._backend.model_name()
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
                self._note_server(page.data[0])
                logger.info("using model %s served at %s", self._model, self.config.base_url)
        return self._model

    async def _with_retries(self, op: Callable[[], Awaitable[T]], usage: Usage, what: str) -> T:
        """Run ``op`` with retries; count retries in ``usage``; raise RunFailed when it cannot succeed."""
        cfg = self.config
        attempts = cfg.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return await op()
            except openai.APIError as exc:
                failure = classify(exc, cfg.timeout_s)
                if not failure.retryable or attempt == attempts:
                    usage.failures += 1
                    self._record(usage)
                    message = failure_message(failure, cfg, what, self._model, attempt)
                    raise RunFailed(message, cause=failure.cause) from exc
                delay = backoff_delay(cfg, attempt, failure.retry_after, self._rng)
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
        choices: tp.CallChoices | None = None,
    ) -> LLMReply:
        """Send one chat request and parse the reply with the configured tool protocol.

        In text mode the tool description is appended to the system message of the *request*
        (``messages`` is not modified). Tool calls are validated against ``tools``; problems are
        reported in ``LLMReply.tool_error``, never raised. Raises :class:`RunFailed` when the
        endpoint cannot answer. ``choices`` narrows a constrained call to what is valid now (the tools
        callable, the mask ids that exist); it never changes validation.
        """
        cfg = self.config
        specs = tp.as_specs(tools or [])
        request = self._request(messages, specs, temperature, max_tokens)
        usage = Usage(calls=1)
        started = time.perf_counter()
        # an endpoint known not to take grammars is never sent one: building it (about 4 ms) would be waste
        sendable = self._backend is not None or self._server_grammar is not False
        grammar = call_grammar(cfg, specs, choices, request["max_tokens"]) if sendable else None
        if self._backend is not None:
            completion = await self._backend.complete({**request, "grammar": grammar}, usage)
        else:
            completion = await self.complete_http(request, grammar, usage)
        where = self._backend.description if self._backend is not None else cfg.base_url
        try:  # bounded, checked and parsed off the event loop (see agent.reply_limits)
            reply_limits.count_usage(completion, usage, where)
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

    def _note_server(self, model: Any) -> None:
        """In ``constrained="auto"`` mode, send grammars only to a server that says it is vLLM."""
        if self._server_grammar is None:
            self._server_grammar = getattr(model, "owned_by", None) == "vllm"

    async def complete_http(self, request: dict[str, Any], grammar: Any, usage: Usage) -> Any:
        """One chat completion from this client's endpoint, with retries; the grammar (a
        :class:`~agent.backends.grammar.CallGrammar` or None) goes in vLLM's structured-output field when
        the endpoint takes it; a server rejecting that field is asked again without it, and not again."""
        request = {**request, "model": await self.model_name()}
        url = self.config.base_url
        if grammar is not None and self._server_grammar is None:
            with contextlib.suppress(openai.APIError, httpx.HTTPError, ValueError):  # one probe, no retries
                page = await self._openai.models.list()
                self._note_server(page.data[0] if page.data else None)
        if grammar is not None and self._server_grammar:
            request["extra_body"] = {**request.get("extra_body", {}), **server_grammar_fields(grammar)}
        async with self._slots or contextlib.nullcontext():
            try:
                return await self._with_retries(
                    lambda: reply_limits.readable(self._openai.chat.completions.create(**request), url),
                    usage, "answer a chat request",
                )
            except RunFailed as exc:
                if "extra_body" not in request or exc.cause != "llm_rejected" or not about_grammar(str(exc)):
                    raise
                logger.warning("endpoint %s refused the call grammar; not sending it again", self.config.base_url)
                self._server_grammar = False
                plain = {**request, "extra_body": dict(self.config.extra_body)}
                return await self._with_retries(
                    lambda: reply_limits.readable(self._openai.chat.completions.create(**plain), url),
                    usage, "answer a chat request",
                )

    def _request(
        self, messages: Sequence[dict], specs: list[tp.ToolSpec], temperature: float | None, max_tokens: int | None
    ) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` (without the model)."""
        cfg = self.config
        text_tools = specs and cfg.tool_protocol == "text"
        request: dict[str, Any] = {
            "messages": with_tools_text(messages, specs) if text_tools else list(messages),
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
