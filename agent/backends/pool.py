"""A pool of OpenAI-compatible endpoints (``--llm URL --llm URL ...``): limits, health and failover.

Every endpoint is an :class:`~agent.llm.LLMClient` of its own with **no retries** and its own limit of
requests in flight (``URL#N``, else ``LLMConfig.max_concurrency``). A request goes to the healthy
endpoint with the most free room (fewest in flight relative to its limit; ties: the one used least
recently). When an endpoint fails in a way another endpoint could fix (connection refused, 5xx, 429,
timeout) it is marked down for a cool-down that doubles with each failure in a row (from
``backoff_initial_s`` up to ``backoff_max_s``) and the request moves on to the next endpoint at once;
a rejection of the request itself (4xx, context too long) is raised at once, since every endpoint
would give the same answer. The pool tries ``max(max_retries + 1, number of endpoints)`` times in all,
waiting for the earliest cool-down to end when every endpoint is down. An endpoint that answers again
is healthy at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.backends.spec import LLMSpec
from sam3_core.errors import RunFailed

if TYPE_CHECKING:
    from agent.llm import LLMClient, LLMConfig, Usage

logger = logging.getLogger(__name__)

_FAILOVER_CAUSES = frozenset({"llm_unavailable", "llm_timeout", "llm_rate_limited", "llm_bad_response"})


@dataclass
class Endpoint:
    """One pooled endpoint and what the pool knows about it."""

    spec: LLMSpec
    client: LLMClient
    limit: int | None
    in_flight: int = 0
    failures_in_row: int = 0
    down_until: float = 0.0
    last_used: float = 0.0
    served: int = 0
    failed: int = 0

    def room(self) -> float:
        """Free share of the limit (1.0 when idle; unlimited endpoints count requests in flight)."""
        if self.limit is None:
            return 1.0 / (1 + self.in_flight)
        return (self.limit - self.in_flight) / self.limit


class PoolBackend:
    """Several endpoints behind the :class:`~agent.backends.base.Backend` interface."""

    def __init__(self, specs: list[LLMSpec], config: LLMConfig, http_client: Any = None) -> None:
        from agent.llm import LLMClient

        self.config = config
        self.description = " | ".join(str(s) for s in specs)
        self.endpoints = []
        for spec in specs:
            limit = spec.max_in_flight or config.max_concurrency
            member = dataclasses.replace(config, base_url=spec.target, pool=(), max_retries=0,
                                         max_concurrency=limit)
            self.endpoints.append(Endpoint(spec, LLMClient(member, http_client=http_client), limit))
        self._changed = asyncio.Condition()

    async def model_name(self) -> str:
        """The model of the first endpoint that names one (all endpoints should serve the same model)."""
        last: RunFailed | None = None
        for endpoint in self._order():
            try:
                return await endpoint.client.model_name()
            except RunFailed as exc:
                self._mark_down(endpoint, exc)
                last = exc
        assert last is not None
        raise last

    def _order(self) -> list[Endpoint]:
        """Endpoints, best first: healthy before down, then most free room, then least recently used."""
        now = time.monotonic()
        return sorted(self.endpoints, key=lambda e: (e.down_until > now, e.down_until, -e.room(), e.last_used))

    def _mark_down(self, endpoint: Endpoint, exc: RunFailed) -> None:
        endpoint.failures_in_row += 1
        endpoint.failed += 1
        cfg = self.config
        cooldown = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2 ** (endpoint.failures_in_row - 1))
        endpoint.down_until = time.monotonic() + cooldown
        logger.warning("LLM endpoint %s marked down for %.1fs (%s): %s", endpoint.spec, cooldown, exc.cause, exc)

    async def _acquire(self) -> Endpoint:
        """The best endpoint with room; waits while every endpoint is at its limit."""
        async with self._changed:
            while True:
                best = self._order()[0]
                if best.limit is None or best.in_flight < best.limit:
                    best.in_flight += 1
                    best.last_used = time.monotonic()
                    return best
                await self._changed.wait()

    async def _release(self, endpoint: Endpoint) -> None:
        async with self._changed:
            endpoint.in_flight -= 1
            self._changed.notify_all()

    async def complete(self, request: dict[str, Any], usage: Usage) -> Any:
        """Send ``request`` to the best endpoint, failing over to the others (see the module docstring)."""
        grammar = request.get("grammar")
        plain = {k: v for k, v in request.items() if k != "grammar"}
        attempts = max(self.config.max_retries + 1, len(self.endpoints))
        last: RunFailed | None = None
        for attempt in range(1, attempts + 1):
            wait = min(e.down_until for e in self.endpoints) - time.monotonic()
            if wait > 0 and all(e.down_until > time.monotonic() for e in self.endpoints):
                await asyncio.sleep(wait)
            endpoint = await self._acquire()
            try:
                completion = await endpoint.client.complete_http(plain, grammar, usage)
            except RunFailed as exc:
                if exc.cause not in _FAILOVER_CAUSES:
                    raise
                self._mark_down(endpoint, exc)
                last = exc
                if attempt < attempts:
                    usage.retries += 1
                continue
            finally:
                await self._release(endpoint)
            endpoint.failures_in_row, endpoint.down_until = 0, 0.0
            endpoint.served += 1
            return completion
        usage.failures += 1
        assert last is not None
        raise RunFailed(f"every LLM endpoint of the pool failed ({self.description}); last: {last}",
                        cause=last.cause) from last

    async def aclose(self) -> None:
        """Close every endpoint's connections."""
        for endpoint in self.endpoints:
            await endpoint.client.aclose()
