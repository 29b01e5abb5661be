"""The tools of the video agent (kinds: search, refine, answer, answer): the image agent's tool set,
re-made for masklets tracked through a video.

* :data:`segment_phrase` tracks every instance of a phrase through the video (or its first
  ``max_frames`` frames while exploring) in an engine session of its own. Each object becomes a
  **masklet** with a new id; an object whose track practically equals an existing masklet's
  (spatio-temporal IoU above ``duplicate_iou``) is not added again, the result names the existing id.
  Masklets scoring below ``score_threshold`` are dropped, and at most ``max_masks_per_phrase`` are kept.
* :data:`refine_masklet` re-tracks one masklet from clicks on one frame (its box there, plus the
  clicks); the masklet keeps its id.
* :data:`select_masklets_and_return` and :data:`report_no_mask` end the query.

Like the image tools (:mod:`tools.segmentation`, whose phrase checks they reuse), they never change the
state themselves: they return a :class:`~tools.registry.ToolOutcome`, or raise
:class:`~sam3_core.errors.ModelRetry` for a mistake of the model. The masks themselves go into the run
context's :class:`~agent.masklets.MaskletStore`; the state gets the light records. Engine work runs in
a worker thread, timed as SAM time for the trace.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Annotated, Literal

from pydantic import Field

from agent.masklets import MaskletRecord, Track, duplicate_of, masklet_record, refine_track, track_phrase
from agent.settings import AgentSettings, VideoSettings
from agent.state import State
from agent.video_context import VideoContext
from prompts import render_prompt
from sam3_core.errors import ModelRetry, PromptError, UsageError, VideoError
from tools.registry import Tool, ToolEnv, ToolOutcome, tool
from tools.segmentation import check_phrase, format_ids, format_phrases, normalise_phrase

logger = logging.getLogger(__name__)

SELECT_TOOL = "select_masklets_and_return"


def video_context(env: ToolEnv) -> VideoContext:
    """The tool's run context, which must be a :class:`VideoContext`."""
    if not isinstance(env.context, VideoContext):
        raise UsageError(f"the video tools need a VideoContext, got {type(env.context).__name__}")
    return env.context


def format_frames(frames: list[int]) -> str:
    """``0, 12, 24`` style, or ``(none)``."""
    return ", ".join(str(f) for f in frames) or "(none)"


def masklet_list(state: State) -> str:
    """One line per candidate masklet: its id, phrase and the frames it is on."""
    lines = []
    for m in state.candidates():
        refined = f", refined {m['revision']}x" if m.get("revision") else ""
        lines.append(f'- {m["id"]} ("{m["phrase"]}"): frames {m["first_frame"]}-{m["last_frame"]} '
                     f'({m["num_frames"]} frames{refined})')
    return "\n".join(lines) or "(none)"


# ----------------------------------------------------------------------------------- segment_phrase


async def _track(ctx: VideoContext, phrase: str) -> dict[int, Track]:
    """The phrase's tracks by engine object id (in a worker thread); engine refusals become ModelRetry."""
    limits = ctx.video_settings
    try:
        return await asyncio.to_thread(track_phrase, ctx.engine, ctx.store, ctx.video, phrase, limits.max_frames,
                                       ctx.num_frames)
    except PromptError as exc:
        raise ModelRetry(f'SAM 3 could not use the phrase "{phrase}": {exc}. Try a short noun phrase.') from exc
    except UsageError as exc:  # the engine has no free session
        raise ModelRetry(f"SAM 3 cannot track another phrase now ({exc}). Choose among the current masklets "
                         f"with {SELECT_TOOL}, or call report_no_mask.") from exc


def _keep(tracks: dict[int, Track], settings: AgentSettings) -> list[Track]:
    """Tracks on some frame and above the score threshold, best first, at most ``max_masks_per_phrase``."""
    kept = [t for t in tracks.values() if t.frames and t.score >= settings.score_threshold]
    kept.sort(key=lambda t: (-t.score, t.object_id))
    return kept[: settings.max_masks_per_phrase]


def _segment_text(state: State, ctx: VideoContext, phrase: str, new_ids: list[int], duplicates: list[int]) -> str:
    """The tool result: the after-segment prompt (with the masklet list), plus a note on duplicates."""
    tried = format_phrases(state.phrases_tried)
    if not new_ids:
        text = render_prompt("video_after_segment_none", phrase=phrase, tried_phrases=tried, query=state.query).rstrip()
        if state.candidates():
            text += f"\n\nCurrent masklets (on the attached keyframes):\n{masklet_list(state)}"
    else:
        text = render_prompt("video_after_segment", phrase=phrase, num_new_masklets=len(new_ids),
                             new_masklet_ids=format_ids(new_ids), keyframes=format_frames(ctx.keyframes(state)),
                             masklet_list=masklet_list(state), tried_phrases=tried, query=state.query).rstrip()
    if duplicates:
        text += f"\n\nIt also found masklets that were already found earlier: ids {format_ids(duplicates)} (unchanged)."
    return text


@tool
async def segment_phrase(
    env: ToolEnv,
    text_prompt: Annotated[str, Field(description='A short noun phrase naming the target, e.g. "dog" or "red car".')],
) -> ToolOutcome:
    """Track every instance of one short noun phrase through the video with SAM 3, each as a new masklet.

    A masklet is one object followed from frame to frame. Each new masklet gets a numeric id that is the
    same on every frame; the keyframes that come back with the result show the masklets with their ids.
    Masklets found earlier keep their ids, and an object already found by an earlier phrase is not added
    again (the result names its id). Never repeat a phrase you already tried.
    """
    state, ctx = env.state, video_context(env)
    phrase = normalise_phrase(text_prompt)
    check_phrase(state, ctx.settings, phrase, select_tool=SELECT_TOOL, noun="masklets")
    with env.meter.timing("sam"):
        tracks = await _track(ctx, phrase)
    existing = ctx.candidate_tracks(state)
    records: list[MaskletRecord] = []
    duplicates: list[int] = []
    for track in _keep(tracks, ctx.settings):
        same = duplicate_of(track, existing, ctx.settings.duplicate_iou, ctx.num_frames)
        if same is not None:
            duplicates.append(same)
            continue
        masklet_id = state.next_mask_id + len(records)
        ctx.store.put(masklet_id, track)
        records.append(masklet_record(masklet_id, track))
    new_ids = [r["id"] for r in records]
    logger.info("segment_phrase(%r): %d new masklet(s) %s, %d duplicate(s)", phrase, len(new_ids), new_ids,
                len(duplicates))
    update = {"masks": [*state.masks, *records], "next_mask_id": state.next_mask_id + len(records),
              "phrases_tried": [*state.phrases_tried, phrase]}
    after = dataclasses.replace(state, **update)
    return ToolOutcome(text=_segment_text(after, ctx, phrase, new_ids, sorted(set(duplicates))), update=update,
                       prune=True)


# ----------------------------------------------------------------------------------- refine_masklet


def _check_refinement(state: State, ctx: VideoContext, masklet_id: int, frame_index: int, points: list[list[float]],
                      point_labels: list[int]) -> Track:
    """The masklet's track, or ModelRetry for an unknown id, a bad frame, mismatched labels, no budget left."""
    limits = ctx.video_settings
    used = sum(int(m.get("revision", 0)) for m in state.masks)
    if used >= limits.max_refinements:
        raise ModelRetry(f"The refinement budget ({limits.max_refinements}) is used up. Call {SELECT_TOOL} with "
                         "the matching masklet ids, or segment_phrase with a new phrase.")
    track = ctx.store.get(masklet_id) if masklet_id in state.candidate_ids() else None
    if track is None:
        shown = format_ids(state.candidate_ids()) if state.candidates() else "none: call segment_phrase first"
        raise ModelRetry(f"Unknown masklet id {masklet_id}. Valid ids are {shown}.")
    if not 0 <= frame_index < ctx.num_frames:
        raise ModelRetry(f"frame_index {frame_index} is outside the video (frames 0-{ctx.num_frames - 1}).")
    if len(point_labels) != len(points):
        raise ModelRetry(f"Give one label per point: got {len(points)} points and {len(point_labels)} labels.")
    if frame_index not in track.frames and 1 not in point_labels:
        raise ModelRetry(f"Masklet {masklet_id} is not on frame {frame_index}: give at least one point with label 1 "
                         f"on the object there, or use a frame it is on ({track.present()[0]}-{track.present()[-1]}).")
    return track


@tool(kind="refine")
async def refine_masklet(
    env: ToolEnv,
    masklet_id: Annotated[int, Field(description="The id of the masklet to fix.")],
    frame_index: Annotated[int, Field(ge=0, description="The frame the points are on (a frame number from a "
                                                         "caption).")],
    points: Annotated[
        list[Annotated[list[float], Field(min_length=2, max_length=2)]],
        Field(min_length=1, max_length=16, description="Points [x, y] in pixels of the full-size video frame."),
    ],
    point_labels: Annotated[
        list[Literal[0, 1]],
        Field(min_length=1, max_length=16, description="One per point: 1 on the object, 0 not part of it."),
    ],
) -> ToolOutcome:
    """Fix one masklet with points on one frame, then track the corrected object through the video again.

    Use it when a masklet follows the right object but its mask is clearly wrong: put label-1 points on
    parts of the object it misses and label-0 points on what it wrongly covers. The masklet keeps its id;
    the result shows the keyframes again. Do not use it to switch to a different object.
    """
    state, ctx = env.state, video_context(env)
    track = _check_refinement(state, ctx, masklet_id, frame_index, points, list(point_labels))
    limits = ctx.video_settings
    try:
        with env.meter.timing("sam"):
            refined = await asyncio.to_thread(refine_track, ctx.engine, ctx.store, ctx.video, track, frame_index,
                                              points, list(point_labels), limits.max_frames, ctx.num_frames)
    except (PromptError, VideoError) as exc:
        raise ModelRetry(f"SAM 3 could not use these points: {exc}") from exc
    if not refined.frames:
        raise ModelRetry(f"With these points masklet {masklet_id} would be empty on every frame, so it was left "
                         "unchanged. Put label-1 points on the object itself.")
    ctx.store.put(masklet_id, refined)
    old = state.mask_by_id(masklet_id)
    revision = int(old.get("revision", 0)) + 1 if old else 1
    masks = [masklet_record(masklet_id, refined, revision) if m["id"] == masklet_id else m for m in state.masks]
    after = dataclasses.replace(state, masks=masks)
    logger.info("refine_masklet(%d) on frame %d with %d point(s): on %d frame(s)", masklet_id, frame_index,
                len(points), len(refined.frames))
    text = render_prompt("video_after_refine", masklet_id=masklet_id, frame_index=frame_index,
                         keyframes=format_frames(ctx.keyframes(after)), masklet_list=masklet_list(after),
                         query=state.query).rstrip()
    return ToolOutcome(text=text, update={"masks": masks}, prune=True)


# ----------------------------------------------------------------------------------- final answers


@tool(kind="answer")
async def select_masklets_and_return(
    env: ToolEnv,
    masklet_ids: Annotated[
        list[int], Field(min_length=1, description="Ids of all masklets that make up the answer (from any phrase).")
    ],
) -> ToolOutcome:
    """Give the final answer: the ids of every masklet that belongs to what the query asks for, and no others.

    Ids may come from different phrases. The answer is those objects on every frame of the video where
    they are visible. This ends the task.
    """
    state = env.state
    valid = state.candidate_ids()
    chosen = list(dict.fromkeys(masklet_ids))
    unknown = [i for i in chosen if i not in valid]
    if unknown:
        shown = format_ids(valid) if valid else "none: call segment_phrase first"
        raise ModelRetry(f"Unknown masklet id(s) {format_ids(unknown)}. Valid ids are {shown}.")
    logger.info("answer: masklets %s", chosen)
    return ToolOutcome(text=f"Answer recorded: masklets {format_ids(chosen)}.", final=True,
                       update={"answer_ids": chosen, "status": "answered"})


@tool(kind="answer")
async def report_no_mask(env: ToolEnv) -> ToolOutcome:
    """Answer that nothing in the video matches the query.

    Use it only after looking at the frames carefully and trying several phrases. This ends the task.
    """
    logger.info("answer: no masklet (after phrases %s)", env.state.phrases_tried)
    return ToolOutcome(text="Answer recorded: no matching masklet.", final=True,
                       update={"answer_ids": [], "status": "no_mask"})


#: Every video tool, in the order they are offered to the model.
VIDEO_TOOLS: tuple[Tool, ...] = (segment_phrase, refine_masklet, select_masklets_and_return, report_no_mask)


def video_tools_for(settings: VideoSettings) -> list[Tool]:
    """The video tools offered under ``settings`` (``refine_masklet`` only when refinement is on)."""
    return [t for t in VIDEO_TOOLS if settings.refinement or t.kind != "refine"]
