"""The MCP ``reason_segment_video`` tool: the video agent answers a query about a video with masklets.

Registered next to ``track_video`` (same engine holder, same one-video-at-a-time lock) when the server has
an LLM. The result names the chosen masklets with, per masklet, the frames it is on and its box there (and
with ``include_masks`` each frame's COCO RLE); the image content shows the chosen masklets on keyframes.
"""

from __future__ import annotations

import asyncio
import base64
import io
import tempfile
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from agent.settings import VIDEO_AGENT_DEFAULTS, VideoAgentSettings, VideoSettings
from agent.video_agent import run_video_agent
from sam3_core.errors import Sam3AgentError
from serving.clips import ClipLimits, prepare_clip
from serving.mcp.server import EngineHolder, McpOptions, Rle, allowed_path

REASON_VIDEO_DESCRIPTION = """Answer a question about a video with the objects that answer it, tracked over the video.

A multimodal model looks at the video's frames, tracks candidate phrases with SAM 3 and chooses the objects
(masklets) that answer the query, e.g. "the player who scores" or "the cup the woman picks up". video_path is a
file on this server's machine (mp4, webm, mov, ... or a folder of frames). This takes a while: every phrase the
model tries is tracked over the whole video. At most max_frames frames are looked at (default and cap: the
server's, 300 unless configured): a longer video is sampled evenly over its whole length (every k-th frame), and
then the frame indices of the result are those of the sampled frames (clip.frame_indices maps them back).

Returns status (answered, no_mask, budget_exhausted or failed), the chosen masklet ids and per masklet its phrase,
score and, for every frame it is on, its box (with include_masks also the frame's COCO RLE). The image shows the
chosen masklets on a few keyframes."""


class MaskletFrame(BaseModel):
    frame_index: int
    box_xywh: list[float]
    rle: Rle | None = None


class Masklet(BaseModel):
    id: int
    phrase: str | None
    score: float
    frames: list[MaskletFrame]


class ClipInfo(BaseModel):
    source_frames: int
    fps: float
    width: int
    height: int
    stride: int
    frames: int
    frame_indices: list[int]


class VideoAnswer(BaseModel):
    query: str
    status: str
    error: str | None = None
    masklet_ids: list[int]
    masklets: list[Masklet]
    phrases_tried: list[str]
    steps: int
    num_frames: int
    clip: ClipInfo | None = None


def answer_output(document: dict[str, Any], include_masks: bool) -> VideoAnswer:
    """The tool's structured output from the answer's ``to_json()`` document."""
    chosen = set(document["masklet_ids"])
    masklets = []
    for annotation in document["annotations"]:
        if annotation["object_id"] not in chosen:
            continue
        frames = [MaskletFrame(frame_index=i, box_xywh=box, rle=Rle(**rle) if include_masks else None)
                  for i, (rle, box) in enumerate(zip(annotation["segmentations"], annotation["bboxes"]))
                  if rle is not None]
        masklets.append(Masklet(id=annotation["object_id"], phrase=annotation.get("phrase"),
                                score=annotation["score"], frames=frames))
    length = document["videos"][0]["length"] if document.get("videos") else 0
    return VideoAnswer(query=document["query"], status=document["status"], error=document.get("error"),
                       masklet_ids=list(document["masklet_ids"]), masklets=masklets,
                       phrases_tried=list(document.get("phrases_tried", [])), steps=document["steps"],
                       num_frames=length)


def _plot_png(answer: Any) -> str | None:
    if not answer.masklet_ids:
        return None
    buffer = io.BytesIO()
    answer.plot().save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


async def _answer(holder: EngineHolder[Any], options: McpOptions, lock: asyncio.Lock, video: str,
                  query: str) -> Any:
    """Run the video agent on ``video`` (one video query at a time, within the video timeout)."""
    engine = await holder.get()
    settings = VideoAgentSettings(agent=VIDEO_AGENT_DEFAULTS, video=VideoSettings(max_frames=None))
    async with lock:
        try:
            return await asyncio.wait_for(run_video_agent(engine, options.llm, video, query, settings=settings),
                                          options.video_timeout_s)
        except Sam3AgentError as exc:
            raise ToolError(str(exc)) from exc
        except TimeoutError as exc:
            raise ToolError(f"the query took longer than {options.video_timeout_s:g}s") from exc


def add_video_agent_tool(server: MCPServer, holder: EngineHolder[Any], options: McpOptions, lock: asyncio.Lock) -> None:
    """Register ``reason_segment_video`` (needs ``options.llm``) on the video engine of ``holder``."""

    @server.tool(name="reason_segment_video", description=REASON_VIDEO_DESCRIPTION,
                 annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def reason_segment_video(
        query: Annotated[str, Field(min_length=1, max_length=2000, description="what to find, in plain words")],
        video_path: Annotated[str, Field(description="path of the video file (or frame folder) on the server")],
        include_masks: Annotated[bool, Field(description="add each frame's COCO RLE mask per masklet")] = False,
        max_frames: Annotated[int | None, Field(ge=1, description=(
            "most frames to look at (default and cap: the server's); longer videos are sampled evenly"))] = None,
    ) -> Annotated[CallToolResult, VideoAnswer]:
        if options.llm is None:
            raise ToolError("reason_segment_video is not available: this server was started without an LLM")
        path = allowed_path(options, video_path, "video", folders=True)
        limits = ClipLimits(options.video_agent_max_frames, options.video_max_seconds, options.max_pixels)
        with tempfile.TemporaryDirectory(prefix="sam3-clip-") as work:
            try:  # the bounds are checked (and the clip sampled) before the model is loaded or asked
                plan = await asyncio.to_thread(prepare_clip, path, Path(work), limits.frames_for(max_frames), limits)
            except Sam3AgentError as exc:
                raise ToolError(str(exc)) from exc
            answer = await _answer(holder, options, lock, plan.video, query)
            output = answer_output(answer.to_json(), include_masks)
            output.clip = ClipInfo(**plan.to_json())
            plot = await asyncio.to_thread(_plot_png, answer)
        content: list[Any] = [TextContent(type="text", text=(
            f"Answer: masklets {output.masklet_ids}." if output.status == "answered"
            else f"No masklets ({output.status}). {output.error or ''}".strip()))]
        if plot is not None:
            content.append(ImageContent(type="image", data=plot, mime_type="image/png"))
        return CallToolResult(content=content, structured_content=output.model_dump(mode="json"))
