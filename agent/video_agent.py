"""The video agent: answer a query about a video with masklets (objects tracked by SAM 3), chosen by an MLLM.

::

    from agent.llm import LLMConfig
    from agent.settings import VideoAgentSettings, VideoSettings
    from agent.video_agent import run_video_agent_sync
    from sam3_core.video import VideoEngine

    engine = VideoEngine.from_pretrained("facebook/sam3")
    answer = run_video_agent_sync(engine, LLMConfig(base_url="http://localhost:8000/v1"), "park.mp4",
                                  "the dog that jumps over the bench",
                                  settings=VideoAgentSettings(video=VideoSettings(keyframes=4)))
    answer.masklet_ids                 # the chosen masklets (ids stable across frames)
    answer.frame_masks(40)             # (masks, ids) of the chosen masklets on frame 40
    answer.to_json()                   # result.json: the summary and the YouTube-VIS-style masks
    answer.trace_json()                # trace.json
    answer.plot()                      # a PIL image: keyframes with the chosen masklets and a legend
    answer.save("out/")                # result.json, trace.json

How it works: the model sees a few frames of the video with the query and calls ``segment_phrase``,
which tracks every instance of a phrase through the video (:mod:`tools.video_tools`); the result comes
with **keyframes**, frames where the masklets are, drawn with every masklet numbered by its id (one
contact sheet by default, :mod:`agent.keyframes`). The model may try other phrases, fix a masklet with
``refine_masklet``, and answers with ``select_masklets_and_return`` or ``report_no_mask``. The answer is
the chosen masklets on every frame of the video where they are: when ``max_frames`` bounded the
exploration, they are tracked on to the end after the answer.

**One graph for both media**: the same compiled :func:`agent.graph.build_graph` runs with a
:class:`~agent.video_context.VideoContext` whose ``media`` is :data:`agent.media.video.VIDEO_MEDIA`
(the video tools and the video conversation), the peer of the image medium. Nodes, router, pruned
conversation, retries on model mistakes, budgets (:mod:`agent.limits`), the LLM client, both tool protocols
and the trace are shared.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from agent.answers import VideoAgentAnswer, VideoAgentRunFailed
from agent.graph import build_graph, recursion_limit
from agent.llm import LLMClient, LLMConfig, Usage
from agent.masklets import MaskletStore, complete_tracks
from agent.media.video import VIDEO_MEDIA, VideoMedia, keyframe_parts
from agent.runner import using_client
from agent.settings import VideoAgentSettings
from agent.state import INVALID_REPLIES, State, new_query, state_from_values
from agent.video_context import VideoContext, VideoInput
from sam3_core.errors import InputError, UsageError
from sam3_core.video import FrameSource, VideoEngine, open_video
from sam3_core.video.outputs import VisJsonWriter

logger = logging.getLogger(__name__)

__all__ = ["VIDEO_MEDIA", "VideoAgentAnswer", "VideoAgentRunFailed", "VideoMedia", "keyframe_parts", "run_video_agent",
           "run_video_agent_sync"]


# ----------------------------------------------------------------------------------- running


def _document(source: FrameSource, name: str, store: MaskletStore, state: State, ids: list[int]) -> dict[str, Any]:
    """The YouTube-VIS-style document of the masklets ``ids`` (object id = masklet id)."""
    writer = VisJsonWriter(source, video_name=name)
    for masklet_id, track in store.tracks(ids).items():
        record = state.mask_by_id(masklet_id)
        phrase = record["phrase"] if record else track.phrase
        for frame in track.present():
            entry = track.frames[frame]
            writer.add_object(frame, masklet_id, phrase, track.score, entry.rle, entry.box, entry.area)
    return writer.document()


def _answer(state: State, document: dict[str, Any], usage: Usage, complete_s: float, video: Any) -> VideoAgentAnswer:
    """Build the :class:`VideoAgentAnswer` from the final state and the answer's document."""
    ids = list(state.answer_ids or [])
    records = [m for i in ids if (m := state.mask_by_id(i)) is not None]
    return VideoAgentAnswer(
        query=state.query, status=state.status, masklet_ids=ids, phrases=[m["phrase"] for m in records],
        scores=[m["score"] for m in records], document=document, error=state.error, steps=state.step,
        phrases_tried=list(state.phrases_tried), refinements=sum(int(m.get("revision", 0)) for m in state.masks),
        usage=usage, cause=state.cause, trace=[dict(r) for r in state.trace],
        timings={**state.timings, "complete_s": round(complete_s, 6)}, video=video,
    )


async def _run_graph(ctx_args: dict[str, Any], llm: LLMConfig | LLMClient, query: str,
                     settings: VideoAgentSettings, graph: Any = None,
                     thread_id: str | None = None) -> tuple[State, Usage]:
    """Run the shared agent graph on ``thread_id`` (default: a new thread) with a :class:`VideoContext`;
    the final state and usage."""
    graph = graph if graph is not None else build_graph()
    config: dict[str, Any] = {"configurable": {"thread_id": thread_id or f"sam3-video-agent-{uuid.uuid4().hex}"},
                              "recursion_limit": recursion_limit(settings.agent)}
    async with using_client(llm) as shared:
        client = shared.scoped()  # this query's own usage, even when the client is shared
        context = VideoContext(llm=client, media=VIDEO_MEDIA, settings=settings.agent,
                               video_settings=settings.video, **ctx_args)
        values = await graph.ainvoke(new_query(query, context.key), config, context=context)
        return state_from_values(values), client.usage


async def run_video_agent(video_engine: VideoEngine, llm: LLMConfig | LLMClient, video: VideoInput, query: str, *,
                          settings: VideoAgentSettings | None = None, graph: Any = None,
                          thread_id: str | None = None, store: MaskletStore | None = None) -> VideoAgentAnswer:
    """Answer ``query`` on ``video`` with the agent loop; returns a :class:`VideoAgentAnswer`.

    Args:
        video_engine: the SAM 3 video engine. It needs a free session per phrase being explored (one at
            a time when ``max_frames`` is None; with ``max_frames`` they stay open until the query ends).
        llm: where the LLM is (a new client is made and closed), or an open :class:`LLMClient` to share.
        video: a video file, a folder of frames or a ``(T, H, W, 3)`` uint8 array.
        query: the query. settings: limits and switches (:class:`VideoAgentSettings` defaults when None).
        graph: the compiled graph to run (default: a new :func:`agent.graph.build_graph`); a wrapper with the
            same ``ainvoke`` (such as the HTTP server's step-streaming one) may stand in.
        thread_id, store: to continue an earlier query on the same video (a follow-up such as "only the one
            on the left"): its thread (on ``graph``, whose checkpointer keeps it) and a store holding the
            tracks of the thread's masklets (:meth:`MaskletStore.carried`). Default: a new thread and store.

    Raises:
        InputError: empty query. VideoError: the video cannot be read. UsageError: wrong settings or video type
            (a :class:`~sam3_core.video.FrameSource` is refused: every engine session opens the video itself).
        VideoAgentRunFailed: the LLM endpoint could not answer (carries the answer so far and its trace).
    """
    if not query or not query.strip():
        raise InputError("query is empty")
    settings = settings or VideoAgentSettings()
    if not isinstance(settings, VideoAgentSettings):
        raise UsageError(f"settings must be VideoAgentSettings, got {type(settings).__name__}")
    if not isinstance(video, (str, os.PathLike, np.ndarray, Sequence)):  # each session opens the video itself
        raise UsageError(f"video must be a file, a folder of frames or an array of frames, got {type(video).__name__}")
    source = await asyncio.to_thread(open_video, video)
    store = store if store is not None else MaskletStore()
    try:
        ctx_args = {"engine": video_engine, "video": video, "source": source, "store": store}
        state, usage = await _run_graph(ctx_args, llm, query.strip(), settings, graph, thread_id)
        ids = list(state.answer_ids or [])
        started = time.perf_counter()
        await asyncio.to_thread(complete_tracks, video_engine, store, ids)
        name = os.fspath(video) if isinstance(video, (str, os.PathLike)) else source.name
        document = await asyncio.to_thread(_document, source, name, store, state, ids)
        answer = _answer(state, document, usage, time.perf_counter() - started, video)
    finally:
        await asyncio.to_thread(store.close, video_engine)
        source.close()
    logger.info("video query %r: %s %s (%d steps, %d LLM calls, %.2f s)", answer.query, answer.status,
                answer.masklet_ids, answer.steps, usage.calls, answer.timings.get("wall_s", 0.0))
    if state.status == "failed" and state.cause != INVALID_REPLIES:
        raise VideoAgentRunFailed(state.error, cause=state.cause or "error", answer=answer)  # type: ignore[arg-type]
    return answer


def run_video_agent_sync(*args: Any, **kwargs: Any) -> VideoAgentAnswer:
    """:func:`run_video_agent` for synchronous code (same arguments); not from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_video_agent(*args, **kwargs))
    raise UsageError("run_video_agent_sync was called from a running event loop; use `await run_video_agent(...)`")
