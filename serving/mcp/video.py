"""The MCP ``track_video`` tool: phrases (or a box on one frame) tracked through a video with SAM 3.

The result is per object, not per frame: each track lists, for every frame the object is on, its
scores and box, and with ``include_masks`` its COCO RLE (off by default: masks for every frame of a
long video are a lot of text for a model). The image content is the first frame where objects were
found, with each object drawn and labelled by its id.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from sam3_core.errors import Sam3AgentError
from serving.http.render import candidates_overlay_png
from serving.mcp.server import EngineHolder, McpOptions, Rle, allowed_path

TRACK_DESCRIPTION = """Segment and track objects through a video file with SAM 3.

Give short noun phrases ("person", "red car") to track every instance of each through the video, and/or a
box (pixel [x1, y1, x2, y2]) on frame box_frame to track one particular object. Objects keep one id for the
whole video. video_path is a file on this server's machine (mp4, webm, mov, ... or a folder of frames).
Long videos take a while: use max_frames to look at the first part only.

Returns the video's size and frame count and one track per object: its phrase (null for the boxed object)
and, for each frame it is on, score, tracker score and box; with include_masks also each frame's COCO RLE
mask. The image shows the first frame with objects, each labelled with its id."""


class TrackPoint(BaseModel):
    frame_index: int
    score: float
    tracker_score: float = Field(description="the tracker's confidence that the object is visible")
    box_xyxy: list[float]
    rle: Rle | None = None


class Track(BaseModel):
    object_id: int
    phrase: str | None
    frames: list[TrackPoint]


class VideoSummary(BaseModel):
    num_frames: int
    width: int
    height: int
    fps: float


class TrackOutput(BaseModel):
    video: VideoSummary
    frames_processed: int
    tracks: list[Track]


def _prompt(engine: Any, session: str, phrases: list[str], box: list[float] | None, box_frame: int) -> None:
    if phrases:
        engine.add_text_prompts(session, phrases)
    if box is not None:
        engine.add_box(session, box_frame, box)


def track(engine: Any, path: str, phrases: list[str], box: list[float] | None, box_frame: int,
          max_frames: int | None, include_masks: bool) -> tuple[TrackOutput, str | None]:
    """Run one tracking session (blocking) and return the output and the overlay PNG (base64) or None."""
    session = engine.start_session(path)
    try:
        _prompt(engine, session, phrases, box, box_frame)
        source = engine.session_source(session)
        tracks: dict[int, Track] = {}
        overlay, processed = None, 0
        start = box_frame if box is not None and not phrases else 0
        for frame in engine.propagate(session, start, "forward", max_frames):
            processed += 1
            rles = frame.rles if include_masks else [None] * len(frame)
            for obj, phrase, score, tscore, bbox, rle in zip(frame.object_ids, frame.phrases, frame.scores,
                                                             frame.tracker_scores, frame.boxes, rles):
                entry = tracks.setdefault(obj, Track(object_id=obj, phrase=phrase, frames=[]))
                entry.frames.append(TrackPoint(frame_index=frame.frame_index, score=round(float(score), 4),
                                               tracker_score=round(float(tscore), 4),
                                               box_xyxy=[round(float(v), 1) for v in bbox],
                                               rle=Rle(**rle) if rle else None))
            if overlay is None and len(frame):
                overlay = candidates_overlay_png(source.frame(frame.frame_index), frame.masks, frame.object_ids)
        summary = VideoSummary(num_frames=source.num_frames, width=source.width, height=source.height,
                               fps=float(getattr(source, "fps", 0.0) or 0.0))
        return TrackOutput(video=summary, frames_processed=processed, tracks=list(tracks.values())), overlay
    finally:
        engine.close_session(session)


def _result(output: TrackOutput, overlay: str | None) -> CallToolResult:
    data = output.model_dump(mode="json")
    lines = [f"{len(output.tracks)} object(s) over {output.frames_processed} frame(s)."]
    lines += [f"- object {t.object_id} ({t.phrase or 'boxed object'}): frames {t.frames[0].frame_index}-"
              f"{t.frames[-1].frame_index}" for t in output.tracks if t.frames]
    content: list[Any] = [TextContent(type="text", text="\n".join(lines) + "\n" + json.dumps(
        {"video": data["video"], "frames_processed": output.frames_processed}))]
    if overlay is not None:
        content.append(ImageContent(type="image", data=overlay, mime_type="image/png"))
    return CallToolResult(content=content, structured_content=data)


def add_video_tool(server: MCPServer, video_factory: Callable[[], Any], options: McpOptions,
                   loader: ThreadPoolExecutor | None = None) -> EngineHolder[Any]:
    """Register ``track_video`` (and ``reason_segment_video`` when ``options.llm`` is set) on ``server``; returns
    the holder of the video engine (close it at the end).

    Pass the image engine's ``loader`` so the two models load one after the other.
    """
    holder: EngineHolder[Any] = EngineHolder(video_factory, loader)
    lock = asyncio.Lock()  # one video at a time: sessions hold the tracker state of their video

    @server.tool(name="track_video", description=TRACK_DESCRIPTION,
                 annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def track_video(
        video_path: Annotated[str, Field(description="path of the video file (or frame folder) on the server")],
        phrases: Annotated[list[str], Field(max_length=16, description="short noun phrases to track")] = [],  # noqa: B006
        box: Annotated[list[float] | None, Field(min_length=4, max_length=4,
                                                 description="pixel [x1, y1, x2, y2] of one object")] = None,
        box_frame: Annotated[int, Field(ge=0, description="the frame the box is on")] = 0,
        max_frames: Annotated[int | None, Field(ge=1, description="most frames to process")] = None,
        include_masks: Annotated[bool, Field(description="add each frame's COCO RLE mask per object")] = False,
    ) -> Annotated[CallToolResult, TrackOutput]:
        if not phrases and box is None:
            raise ToolError("give phrases and/or a box to track")
        path = str(allowed_path(options, video_path, "video", folders=True))
        engine = await holder.get()
        async with lock:
            try:
                output, overlay = await asyncio.wait_for(asyncio.to_thread(
                    track, engine, path, phrases, box, box_frame, max_frames, include_masks), options.video_timeout_s)
            except Sam3AgentError as exc:
                raise ToolError(str(exc)) from exc
            except TimeoutError as exc:
                raise ToolError(f"tracking took longer than {options.video_timeout_s:g}s; try max_frames") from exc
        return _result(output, overlay)

    if options.llm is not None:
        from serving.mcp.video_agent import add_video_agent_tool

        add_video_agent_tool(server, holder, options, lock)
    return holder
