"""The video medium: the video tools, evenly spaced frames with the query, keyframes of the masklets.

:data:`VIDEO_MEDIA` is the :class:`~agent.media.base.Media` of every
:class:`agent.video_context.VideoContext`. The conversation starts with the system prompt and the
query with a few evenly spaced frames; the latest ``segment_phrase`` or ``refine_masklet`` result comes
with **keyframes**: frames where the candidate masklets are, each masklet numbered by its id (one
contact sheet by default, :mod:`agent.keyframes`). Nothing runs in the background.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from agent.keyframes import cell_scale, contact_sheet, render_cell, spread
from agent.state import State
from agent.video_context import VideoContext
from prompts import render_prompt
from sam3_core.postprocess import rle_to_mask
from tools.registry import Tool
from tools.video_tools import format_frames, video_tools_for


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
    """The video agent's :class:`~agent.media.base.Media`: the video tools, sampled frames, masklet keyframes."""

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
