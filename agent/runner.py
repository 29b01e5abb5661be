"""The public entry point: answer one reasoning-segmentation query on one image.

::

    from agent.llm import LLMConfig
    from agent.runner import run_agent, run_agent_sync

    answer = await run_agent(engine, LLMConfig(base_url="http://localhost:8000/v1"), "kitchen.jpg",
                             "the cup the woman is about to drink from")
    answer.raise_for_status()          # RunFailed unless the query was answered (or found nothing)
    answer.mask                        # (H, W) bool union of the chosen masks
    answer.to_json()                   # the result summary (result.json), timings included
    answer.trace_json()                # the step-by-step trace with timings (trace.json)
    answer.plot()                      # a PIL image: the overlay with a legend of ids and phrases
    answer.save("out/")                # mask.png, overlay.png, result.json, trace.json

A query that ends without an answer is **not** an exception: :class:`AgentAnswer` carries the status
(``budget_exhausted`` when a limit -- ``max_steps``, ``max_seconds``, ``max_tokens`` -- was reached,
with the best answer so far in its masks; ``failed`` when the model kept making invalid replies) and
the reason in ``error``; :meth:`AgentAnswer.raise_for_status` turns that into a
:class:`~sam3_core.errors.RunFailed` whose ``cause`` is the status.

Failures of the LLM endpoint itself (after the client's retries: HTTP 5xx, timeouts, connection
errors) raise :class:`AgentRunFailed`, a :class:`~sam3_core.errors.RunFailed` with the endpoint's
``cause`` (``llm_timeout``, ``llm_unavailable``, ...) whose ``answer`` is the :class:`AgentAnswer` of
the query so far (status ``failed``, no masks) with its ``trace`` and ``timings``, so the trace can
still be saved. The thread's checkpoint records the query as ``failed`` too.

To ask a follow-up question about the same image, pass the same ``thread_id`` and the same
``checkpointer`` (or the same compiled ``graph``): the masks found earlier keep their ids and are shown
to the model again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph

from agent.answers import AgentAnswer, AgentRunFailed, AnswerStatus
from agent.context import Context
from agent.graph import build_graph, recursion_limit
from agent.llm import LLMClient, LLMConfig, Usage
from agent.settings import AgentSettings
from agent.state import INVALID_REPLIES, State, decode_masks, new_query, state_from_values
from sam3_core.engine import Sam3Engine
from sam3_core.errors import InputError, UsageError
from sam3_core.images import ImageInput, LoadedImage

logger = logging.getLogger(__name__)

__all__ = ["AgentAnswer", "AgentRunFailed", "AnswerStatus", "run_agent", "run_agent_sync", "using_client"]


def _answer(state: State, image: LoadedImage, thread_id: str, usage: Usage, source: str = "") -> AgentAnswer:
    """Build the :class:`AgentAnswer` from the final state."""
    ids = state.answer_ids or []
    records = [m for i in ids if (m := state.mask_by_id(i)) is not None]
    return AgentAnswer(
        query=state.query, status=state.status, mask_ids=list(ids), masks=decode_masks(records, image.size_hw),
        boxes=np.array([m["box"] for m in records], dtype=np.float32).reshape(-1, 4),
        scores=[m["score"] for m in records], phrases=[m["phrase"] for m in records], error=state.error,
        steps=state.step, verify_calls=state.verify_calls, phrases_tried=list(state.phrases_tried),
        thread_id=thread_id, usage=usage, cause=state.cause, trace=[dict(r) for r in state.trace],
        timings=dict(state.timings), image=image, source=source,
    )


@contextlib.asynccontextmanager
async def using_client(llm: LLMConfig | LLMClient) -> AsyncIterator[LLMClient]:
    """The given client, or a new one for the config that is closed afterwards (also for video runs)."""
    if isinstance(llm, LLMClient):
        yield llm
        return
    if not isinstance(llm, LLMConfig):
        raise UsageError(f"llm must be an LLMConfig or LLMClient, got {type(llm).__name__}")
    async with LLMClient(llm) as client:
        yield client


async def _check_thread_image(graph: CompiledStateGraph, config: dict[str, Any], key: str) -> None:
    """Refuse to continue a thread with a different image (its mask ids would mean nothing)."""
    snapshot = await graph.aget_state(config)
    earlier = (snapshot.values or {}).get("image_key") if snapshot is not None else None
    if earlier and earlier != key:
        thread = config["configurable"]["thread_id"]
        raise UsageError(f"thread {thread!r} belongs to another image; use a new thread_id for a new image")


async def run_agent(
    engine: Sam3Engine,
    llm: LLMConfig | LLMClient,
    image: ImageInput | LoadedImage,
    query: str,
    *,
    settings: AgentSettings | None = None,
    thread_id: str | None = None,
    checkpointer: BaseCheckpointSaver | None = None,
    graph: CompiledStateGraph | None = None,
) -> AgentAnswer:
    """Answer ``query`` on ``image`` with the agent loop; returns an :class:`AgentAnswer`.

    Args:
        engine: the SAM 3 engine.
        llm: where the LLM is (a new client is made and closed) or an open :class:`LLMClient` to share.
            Its ``tool_protocol`` picks native or text tool calls.
        image: a path, bytes, PIL image, array or :class:`LoadedImage`.
        query: the reasoning-segmentation query.
        settings: limits and switches (:class:`AgentSettings` defaults when None).
        thread_id: continue this thread (same image); a new one is made when None.
        checkpointer: where threads live (a fresh ``InMemorySaver`` when None). Not with ``graph``.
        graph: a graph from :func:`agent.graph.build_graph`, reused across calls.

    Raises:
        InputError: empty query or unreadable image. UsageError: the thread belongs to another image.
        AgentRunFailed: the LLM endpoint could not answer (a :class:`RunFailed` carrying the answer so far
            and its trace).
    """
    if not query or not query.strip():
        raise InputError("query is empty")
    if graph is not None and checkpointer is not None:
        raise UsageError("pass either graph or checkpointer, not both (the graph has its own checkpointer)")
    settings = settings or AgentSettings()
    loaded = await asyncio.to_thread(engine.load, image)
    graph = graph if graph is not None else build_graph(checkpointer)
    thread_id = thread_id or f"sam3-agent-{uuid.uuid4().hex}"
    config: dict[str, Any] = {"configurable": {"thread_id": thread_id}, "recursion_limit": recursion_limit(settings)}
    await _check_thread_image(graph, config, loaded.key)
    async with using_client(llm) as shared:
        client = shared.scoped()  # this query's own usage, even when the client is shared
        context = Context(llm=client, engine=engine, image=loaded, settings=settings)
        values = await graph.ainvoke(new_query(query.strip(), loaded.key), config, context=context)
        usage = client.usage
    state = state_from_values(values)
    source = os.fspath(image) if isinstance(image, (str, os.PathLike)) else ""
    answer = _answer(state, loaded, thread_id, usage, source)
    logger.info("query %r: %s %s (%d steps, %d LLM calls, %.2f s)", answer.query, answer.status, answer.mask_ids,
                answer.steps, usage.calls, answer.timings.get("wall_s", 0.0))
    if state.status == "failed" and state.cause != INVALID_REPLIES:
        raise AgentRunFailed(state.error, cause=state.cause or "error", answer=answer)
    return answer


def run_agent_sync(*args: Any, **kwargs: Any) -> AgentAnswer:
    """:func:`run_agent` for synchronous code (same arguments); not from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_agent(*args, **kwargs))
    raise UsageError("run_agent_sync was called from a running event loop; use `await run_agent(...)` instead")
