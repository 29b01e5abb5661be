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

How it works: the model sees a few frames of the video with the query and calls ``segment_phrase``,
which tracks every instance of a phrase through the video (:mod:`tools.video_tools`); the result comes
with **keyframes**, frames where the masklets are, drawn with every masklet numbered by its id (one
contact sheet by default, :mod:`agent.keyframes`). The model may try other phrases, fix a masklet with
``refine_masklet``, and answers with ``select_masklets_and_return`` or ``report_no_mask``. The answer is
the chosen masklets on every frame of the video where they are: when ``max_frames`` bounded the
exploration, they are tracked on to the end after the answer.

**The image agent's graph is reused as is**: the same compiled :func:`agent.graph.build_graph` runs with a
:class:`~agent.video_context.VideoContext` whose ``media`` is :data:`VIDEO_MEDIA` (:class:`VideoMedia`:
the video tools and the video conversation). Nodes, router, pruned conversation, retries on model
mistakes, budgets (:mod:`agent.limits`), the LLM client, both tool protocols and the trace are shared.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from agent.graph import build_graph, recursion_limit
from agent.keyframes import cell_scale, contact_sheet, render_cell, spread
from agent.llm import LLMClient, LLMConfig, Usage
from agent.masklets import MaskletStore, complete_tracks
from agent.runner import AgentRunFailed, AnswerStatus, using_client
from agent.settings import VideoAgentSettings
from agent.state import INVALID_REPLIES, State, Status, new_query, state_from_values
from agent.video_context import VideoContext, VideoInput
from prompts import render_prompt
from sam3_core.errors import InputError, UsageError
from sam3_core.postprocess import rle_to_mask
from sam3_core.video import FrameSource, VideoEngine, open_video
from sam3_core.video.outputs import VisJsonWriter, frame_masks
from tools.registry import Tool
from tools.video_tools import format_frames, video_tools_for

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------- the conversation


def _tool_instructions(ctx: VideoContext) -> str:
    """The system prompt's closing lines: budgets and, in native mode, how calls are made."""
    s, video = ctx.settings, ctx.video_settings
    lines = [f"You have at most {s.max_steps} replies and {s.max_phrases} different phrases for this query."]
    if video.refinement:
        lines.append(f"You may call `refine_masklet` at most {video.max_refinements} times.")
    else:
        lines.append("`refine_masklet` is not available in this run.")
    if s.max_seconds is not None:
        lines.append(f"The query must be answered within {s.max_seconds:g} seconds.")
    if ctx.llm.config.tool_protocol == "native":
        lines.append("Call tools through the function-calling interface, one call per reply.")
    return "\n".join(lines)


def _cells(ctx: VideoContext, state: State | None, frames: list[int], scale: float) -> list[Image.Image]:
    """``frames`` drawn with the state's candidate masklets on them (raw frames when ``state`` is None)."""
    tracks = ctx.candidate_tracks(state) if state is not None else {}
    height, width = ctx.source.height, ctx.source.width
    cells = []
    for frame in frames:
        ids = [i for i, track in tracks.items() if frame in track.frames]
        masks = (np.stack([rle_to_mask(tracks[i].frames[frame].rle) for i in ids]) if ids
                 else np.zeros((0, height, width), dtype=bool))
        cells.append(render_cell(ctx.frame(frame), masks, ids, scale))
    return cells


def keyframe_parts(ctx: VideoContext, state: State | None, frames: list[int]) -> list[dict[str, Any]]:
    """Image parts of ``frames`` with the candidate masklets (raw when ``state`` is None), captioned with
    their frame numbers: one contact sheet, or one image per frame (``keyframe_sheet``). Cached per
    frame set and masklet revision, so an unchanged overlay is drawn and encoded once per query."""
    shown = () if state is None else tuple((m["id"], m.get("revision", 0)) for m in state.candidates())
    source = ctx.source
    captions = [f"frame {f}" for f in frames]
    if ctx.video_settings.keyframe_sheet:
        scale = cell_scale(source.height, source.width, len(frames), ctx.pixel_budget)
        return [ctx.cached_part(("sheet", tuple(frames), shown),
                                lambda: contact_sheet(_cells(ctx, state, frames, scale), captions))]
    scale = cell_scale(source.height, source.width, 1, ctx.pixel_budget)
    return [ctx.cached_part(("keyframe", frame, shown),
                            lambda f=frame, c=caption: contact_sheet(_cells(ctx, state, [f], scale), [c]))
            for frame, caption in zip(frames, captions)]


class VideoMedia:
    """The video agent's :class:`~agent.state.Media`: the video tools, sampled frames, masklet keyframes."""

    def key(self, ctx: VideoContext) -> str:
        """The video's key (:attr:`VideoContext.key`)."""
        return ctx.key

    def tools(self, ctx: VideoContext) -> list[Tool]:
        """:func:`tools.video_tools.video_tools_for` the run's settings."""
        return video_tools_for(ctx.video_settings)

    def opening(self, state: State, ctx: VideoContext) -> list[dict[str, Any]]:
        """The system prompt, then the query with evenly spaced frames of the video."""
        frames = spread(list(range(ctx.num_frames)), ctx.video_settings.keyframes)
        text = render_prompt("video_user_query", query=state.query, num_frames=ctx.num_frames,
                             width=ctx.source.width, height=ctx.source.height, frame_list=format_frames(frames))
        return [
            {"role": "system", "content": render_prompt("video_system", tool_instructions=_tool_instructions(ctx))},
            {"role": "user", "content": [{"type": "text", "text": text}, *keyframe_parts(ctx, None, frames)]},
        ]

    def result_parts(self, state: State, ctx: VideoContext) -> list[dict[str, Any]]:
        """The keyframes with every current masklet numbered by id ([] when there are none)."""
        if not state.candidates():
            return []
        return keyframe_parts(ctx, state, ctx.keyframes(state))

    def earlier_text(self, state: State) -> str:
        """Tells the model about masklets kept from an earlier query on the thread."""
        listed = ", ".join(f'{m["id"]} ("{m["phrase"]}")' for m in state.candidates())
        return (f"Masklets found for an earlier query on this video are still available; the attached keyframes "
                f"show them with their ids: {listed}. Select them directly if they match, else call segment_phrase.")

    def before_model_call(self, state: State, ctx: VideoContext) -> None:
        """Nothing to prepare for videos."""


#: The media hooks of video runs.
VIDEO_MEDIA = VideoMedia()


# ----------------------------------------------------------------------------------- the answer


@dataclass
class VideoAgentAnswer(AnswerStatus):
    """The outcome of one video query.

    Attributes:
        query: the query as given. status: as for images (:data:`agent.state.Status`).
        masklet_ids: the chosen masklets (``answered``), the best answer so far (``budget_exhausted``:
            the highest-scoring masklet of this query), else empty.
        phrases / scores: per chosen masklet, the phrase that found it and its best detection score.
        document: the chosen masklets on every frame of the video where they are, YouTube-VIS-style
            (:mod:`sam3_core.video.outputs`); each annotation's ``object_id`` is the masklet id.
        error / cause: why there is no answer (empty when answered).
        steps: main-loop LLM replies. phrases_tried: phrases tracked. refinements: ``refine_masklet`` calls
            that changed a masklet.
        usage: LLM tokens and calls. trace: one record per graph node run (:mod:`agent.trace`).
        timings: the trace's totals, plus ``complete_s``: tracking the chosen masklets to the video's end.
    """

    query: str
    status: Status
    masklet_ids: list[int]
    phrases: list[str]
    scores: list[float]
    document: dict[str, Any]
    error: str
    steps: int
    phrases_tried: list[str]
    refinements: int
    usage: Usage
    cause: str = ""
    trace: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)

    def frame_masks(self, frame_index: int) -> tuple[np.ndarray | None, list[int]]:
        """The ``(N, H, W)`` bool masks of the chosen masklets on one frame and their ids (None, [] if none)."""
        return frame_masks(self.document, frame_index)

    def frames(self) -> dict[int, list[int]]:
        """Frame index -> ids of the chosen masklets on it, for the frames that have any."""
        out: dict[int, list[int]] = {}
        for annotation in self.document.get("annotations", []):
            for index, rle in enumerate(annotation["segmentations"]):
                if rle is not None:
                    out.setdefault(index, []).append(int(annotation["object_id"]))
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, Any]:
        """result.json: the summary, then the YouTube-VIS-style ``videos``, ``categories``, ``annotations``."""
        return {
            "query": self.query, "status": self.status, "masklet_ids": self.masklet_ids, "phrases": self.phrases,
            "scores": self.scores, "error": self.error, "cause": self.cause, "steps": self.steps,
            "phrases_tried": self.phrases_tried, "refinements": self.refinements,
            "usage": dataclasses.asdict(self.usage), "timings": dict(self.timings), **self.document,
        }

    def trace_json(self) -> dict[str, Any]:
        """The JSON-ready trace document: how the query ended, its timings and one record per node run."""
        return {
            "query": self.query, "status": self.status, "cause": self.cause, "error": self.error,
            "masklet_ids": self.masklet_ids, "timings": dict(self.timings),
            "steps": [dict(record) for record in self.trace],
        }


class VideoAgentRunFailed(AgentRunFailed):
    """The LLM endpoint failed during a video query; ``answer`` is the :class:`VideoAgentAnswer` so far."""


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


def _answer(state: State, document: dict[str, Any], usage: Usage, complete_s: float) -> VideoAgentAnswer:
    """Build the :class:`VideoAgentAnswer` from the final state and the answer's document."""
    ids = list(state.answer_ids or [])
    records = [m for i in ids if (m := state.mask_by_id(i)) is not None]
    return VideoAgentAnswer(
        query=state.query, status=state.status, masklet_ids=ids, phrases=[m["phrase"] for m in records],
        scores=[m["score"] for m in records], document=document, error=state.error, steps=state.step,
        phrases_tried=list(state.phrases_tried), refinements=sum(int(m.get("revision", 0)) for m in state.masks),
        usage=usage, cause=state.cause, trace=[dict(r) for r in state.trace],
        timings={**state.timings, "complete_s": round(complete_s, 6)},
    )


async def _run_graph(ctx_args: dict[str, Any], llm: LLMConfig | LLMClient, query: str,
                     settings: VideoAgentSettings) -> tuple[State, Usage]:
    """Run the shared agent graph on a new thread with a :class:`VideoContext`; the final state and usage."""
    graph = build_graph()
    config: dict[str, Any] = {"configurable": {"thread_id": f"sam3-video-agent-{uuid.uuid4().hex}"},
                              "recursion_limit": recursion_limit(settings.agent)}
    async with using_client(llm) as shared:
        client = shared.scoped()  # this query's own usage, even when the client is shared
        context = VideoContext(llm=client, media=VIDEO_MEDIA, settings=settings.agent,
                               video_settings=settings.video, **ctx_args)
        values = await graph.ainvoke(new_query(query, context.key), config, context=context)
        return state_from_values(values), client.usage


async def run_video_agent(video_engine: VideoEngine, llm: LLMConfig | LLMClient, video: VideoInput, query: str, *,
                          settings: VideoAgentSettings | None = None) -> VideoAgentAnswer:
    """Answer ``query`` on ``video`` with the agent loop; returns a :class:`VideoAgentAnswer`.

    Args:
        video_engine: the SAM 3 video engine. It needs a free session per phrase being explored (one at
            a time when ``max_frames`` is None; with ``max_frames`` they stay open until the query ends).
        llm: where the LLM is (a new client is made and closed), or an open :class:`LLMClient` to share.
        video: a video file, a folder of frames or a ``(T, H, W, 3)`` uint8 array.
        query: the query. settings: limits and switches (:class:`VideoAgentSettings` defaults when None).

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
    store = MaskletStore()
    try:
        ctx_args = {"engine": video_engine, "video": video, "source": source, "store": store}
        state, usage = await _run_graph(ctx_args, llm, query.strip(), settings)
        ids = list(state.answer_ids or [])
        started = time.perf_counter()
        await asyncio.to_thread(complete_tracks, video_engine, store, ids)
        name = os.fspath(video) if isinstance(video, (str, os.PathLike)) else source.name
        document = await asyncio.to_thread(_document, source, name, store, state, ids)
        answer = _answer(state, document, usage, time.perf_counter() - started)
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
