"""The limits of a query (steps, wall time, tokens) and the best answer returned when one is reached.

A query has three budgets in :class:`~agent.settings.AgentSettings`: ``max_steps`` (main-loop replies),
``max_seconds`` (wall time since the query started) and ``max_tokens`` (LLM tokens of the query,
verification included). :func:`limit_reached` is checked before every main-loop model call; the
wall-time limit is also enforced *during* model calls and tools by :func:`before_deadline`, which
abandons the awaited work at the deadline.

When a limit is reached the query ends with status ``budget_exhausted``, ``cause`` the limit's name,
``error`` naming the limit and its value, and ``answer_ids`` the **best answer so far**
(:func:`best_answer`):

1. the candidates accepted by ``examine_each_mask`` during this query, if any;
2. otherwise the highest-scoring candidate (not rejected) found by a phrase of this query;
3. otherwise no mask.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from agent.settings import AgentSettings
from agent.state import State
from agent.trace import used_tokens

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class LimitHit:
    """A limit that was reached: its name (``max_steps``, ``max_seconds``, ``max_tokens``) and why."""

    name: str
    message: str


class DeadlineReached(Exception):
    """Raised by :func:`before_deadline` when ``max_seconds`` passed while waiting."""


def elapsed_s(state: State) -> float:
    """Seconds since the current query started (0 when its start is unknown)."""
    return time.time() - state.started_at if state.started_at > 0 else 0.0


def seconds_left(state: State, settings: AgentSettings) -> float | None:
    """Time left before ``max_seconds`` (may be negative); None without a time limit."""
    if settings.max_seconds is None:
        return None
    return settings.max_seconds - elapsed_s(state)


def time_limit(state: State, settings: AgentSettings) -> LimitHit:
    """The ``max_seconds`` :class:`LimitHit` (also for a :class:`DeadlineReached` caught by a node)."""
    return LimitHit("max_seconds", f"no answer after {elapsed_s(state):.2f} s (max_seconds={settings.max_seconds:g})")


def limit_reached(state: State, settings: AgentSettings) -> LimitHit | None:
    """The first limit the query has reached (steps, then time, then tokens), or None."""
    if state.step >= settings.max_steps:
        return LimitHit("max_steps", f"no answer after {state.step} model replies (max_steps={settings.max_steps})")
    left = seconds_left(state, settings)
    if left is not None and left <= 0:
        return time_limit(state, settings)
    tokens = used_tokens(state.trace)
    if settings.max_tokens is not None and tokens >= settings.max_tokens:
        return LimitHit("max_tokens", f"no answer after {tokens} LLM tokens (max_tokens={settings.max_tokens})")
    return None


async def before_deadline(work: Awaitable[T], state: State, settings: AgentSettings) -> T:
    """Await ``work``, abandoning it (and raising :class:`DeadlineReached`) when ``max_seconds`` passes."""
    left = seconds_left(state, settings)
    if left is None:
        return await work
    if left <= 0:
        if asyncio.iscoroutine(work):
            work.close()  # never started: do not leave an un-awaited coroutine behind
        raise DeadlineReached
    try:
        return await asyncio.wait_for(work, left)
    except asyncio.TimeoutError:
        if (seconds_left(state, settings) or 0.0) > 0:
            raise  # a timeout of the work itself, not the deadline
        raise DeadlineReached from None


def best_answer(state: State) -> tuple[list[int], str]:
    """The best answer so far (see the module docstring) and how it was chosen."""
    candidates = {m["id"]: m for m in state.candidates()}
    accepted = [i for i in dict.fromkeys(state.accepted_ids) if i in candidates]
    if accepted:
        return accepted, "accepted by examine_each_mask"
    tried = {p.lower() for p in state.phrases_tried}
    found = [m for m in candidates.values() if m["phrase"].lower() in tried]
    if not found:
        return [], "no candidate masks"
    best = max(found, key=lambda m: (m["score"], -m["id"]))
    return [best["id"]], "the highest-scoring candidate"


def exhausted_update(state: State, limit: LimitHit) -> dict[str, object]:
    """The state update that ends the query at ``limit`` with the best answer so far (no trace record)."""
    ids, how = best_answer(state)
    shown = f"masks {ids} ({how})" if ids else how
    logger.warning("%s reached: %s; best answer so far: %s", limit.name, limit.message, shown)
    return {
        "status": "budget_exhausted", "cause": limit.name, "answer_ids": ids, "pending_call": None,
        "error": f"{limit.message}; returning the best answer so far: {shown}",
    }
