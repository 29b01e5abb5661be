"""An MCP server (official ``mcp`` SDK, ``MCPServer``) that lets other agents use SAM 3 and the SAM 3 agent.

Tools:

* ``segment_phrase``: raw SAM 3, every instance of short noun phrases;
* ``reason_segment``: the reasoning agent (needs an LLM), for queries that need understanding;
* ``track_video`` (with ``--video``): phrases or a box tracked through a video (:mod:`serving.mcp.video`).

Both take the image as a file path (on the server's machine) or as base64, and return the result as
structured content (boxes, scores, COCO RLE masks, matching the published output schema), the same
data as JSON text without the RLE strings (for clients that only read text), and an overlay PNG as
image content with every mask numbered by its id.

The model loads in a background thread as the server starts, so the MCP handshake is not held up;
the first tool call waits for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

import numpy as np
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from agent.graph import build_graph
from agent.llm import LLMClient, LLMConfig
from agent.runner import run_agent
from agent.settings import AgentSettings
from sam3_core.engine import Sam3Engine
from sam3_core.errors import Sam3AgentError
from sam3_core.images import DEFAULT_MAX_PIXELS, LoadedImage, load_image
from sam3_core.postprocess import masks_to_rle
from serving.clips import DEFAULT_MAX_FRAMES, DEFAULT_MAX_SECONDS
from serving.http.errors import ApiError
from serving.http.images import ImageIntake, decode_base64
from serving.http.render import candidates_overlay_png

logger = logging.getLogger(__name__)
E = TypeVar("E")

SERVER_INSTRUCTIONS = (
    "Image segmentation with Meta's SAM 3. Use segment_phrase to find every instance of simple things "
    "(\"car\", \"red apple\"); use reason_segment when finding the target needs understanding (\"the person "
    "about to catch the ball\"). Masks come back as COCO RLE in the structured result, and an overlay image "
    "shows each mask with its id."
)


# ----------------------------------------------------------------------------------------- output schemas


class Rle(BaseModel):
    size: list[int] = Field(description="[height, width]")
    counts: str = Field(description="COCO compressed RLE; decode with pycocotools.mask.decode")


class Instance(BaseModel):
    id: int = Field(description="the number drawn on the overlay image")
    score: float
    box_xyxy: list[float] = Field(description="pixel [x1, y1, x2, y2]")
    rle: Rle


class PhraseInstances(BaseModel):
    phrase: str
    presence_score: float = Field(description="how likely the concept is in the image at all")
    instances: list[Instance]


class Size(BaseModel):
    width: int
    height: int


class SegmentOutput(BaseModel):
    image: Size
    results: list[PhraseInstances]


class AnswerMask(Instance):
    phrase: str = Field(description="the phrase SAM 3 found it with")


class ReasonOutput(BaseModel):
    query: str
    status: str = Field(description="answered, no_mask (target not in the image), budget_exhausted or failed")
    error: str
    mask_ids: list[int]
    masks: list[AnswerMask]
    thread_id: str = Field(description="pass it back with the same image to ask a follow-up")
    steps: int
    image: Size


# ----------------------------------------------------------------------------------------- server


@dataclass
class McpOptions:
    """What the MCP tools may do.

    ``image_root``: when set, image paths must lie inside it; ``allow_paths`` False refuses paths
    altogether (base64 only). ``llm`` None disables ``reason_segment``. ``max_bytes`` bounds an image
    however it comes (a path's file size is checked before it is read).

    Over stdio the server runs as its user, for its user: it may read any file that user can read
    (that is the user's own right, as with any local tool). Over HTTP, paths are off unless
    ``image_root`` confines them.
    """

    llm: LLMConfig | None = None
    agent: AgentSettings = field(default_factory=AgentSettings)
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = 32 << 20
    allow_paths: bool = True
    image_root: str | None = None
    agent_timeout_s: float = 300.0
    video_timeout_s: float = 600.0
    #: ``reason_segment_video``: cap (and default) of its ``max_frames``; longer videos are refused.
    video_agent_max_frames: int = DEFAULT_MAX_FRAMES
    video_max_seconds: float = DEFAULT_MAX_SECONDS


class EngineHolder(Generic[E]):
    """Loads an engine on a worker thread from construction on; :meth:`get` waits for it.

    Holders given the same ``loader`` (a one-thread executor) load one after the other: importing and
    loading two models at once from two threads races inside ``transformers``' lazy imports.
    """

    def __init__(self, factory: Callable[[], E], loader: ThreadPoolExecutor | None = None) -> None:
        self._own = loader is None
        self._pool = loader or ThreadPoolExecutor(max_workers=1, thread_name_prefix="sam3-load")
        self._future: Future[E] = self._pool.submit(factory)

    async def get(self) -> E:
        try:
            return await asyncio.wrap_future(self._future)
        except Exception as exc:  # the caller (a model) gets the reason; the log has the traceback
            logger.error("the model failed to load", exc_info=exc)
            raise ToolError(f"the SAM 3 model could not be loaded: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        if self._future.done() and self._future.exception() is None:
            self._future.result().close()
        if self._own:
            self._pool.shutdown(wait=False)


def allowed_path(options: McpOptions, name: str, kind: str, *, folders: bool = False) -> Path:
    """``name`` as a file (or folder) this server may read; ToolError when paths are off, outside the root, or
    missing."""
    if not options.allow_paths:
        raise ToolError(f"this server does not read files; send the {kind} another way")
    path = Path(name).expanduser().resolve()
    if options.image_root and not path.is_relative_to(Path(options.image_root).resolve()):
        raise ToolError(f"{kind}_path must be inside {options.image_root}")
    if not (path.is_file() or (folders and path.is_dir())):
        raise ToolError(f"no such {kind} file: {path}")
    return path


def _image_bytes(options: McpOptions, image_path: str | None, image_base64: str | None) -> bytes:
    if (image_path is None) == (image_base64 is None):
        raise ToolError("give exactly one of image_path and image_base64")
    if image_base64 is not None:
        return decode_base64(image_base64, options.max_bytes)
    return read_capped(allowed_path(options, image_path, "image"), options.max_bytes)  # type: ignore[arg-type]


def read_capped(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, refused (ToolError) when it is over ``max_bytes``: checked from its size before
    reading, and by reading at most one byte more (a file may grow, or be a device that reports no size)."""
    size = path.stat().st_size
    if size > max_bytes:
        raise ToolError(f"the image file is {size} bytes, over this server's limit of {max_bytes}")
    with path.open("rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ToolError(f"the image file is over this server's limit of {max_bytes} bytes")
    return data


def _load(options: McpOptions, image_path: str | None, image_base64: str | None) -> LoadedImage:
    """Read, check and decode the tool's image; errors become ToolError messages for the model."""
    try:
        data = _image_bytes(options, image_path, image_base64)
        ImageIntake(max_pixels=options.max_pixels, max_bytes=options.max_bytes).check(data)
        return load_image(data, options.max_pixels)
    except (Sam3AgentError, ApiError) as exc:
        raise ToolError(str(exc)) from exc


def _result(structured: BaseModel, masks: np.ndarray, ids: list[int], image: LoadedImage,
            summary: str) -> CallToolResult:
    """Structured content, a text copy without RLE strings, and the numbered overlay image."""
    data = structured.model_dump(mode="json")
    text = json.dumps(_without_rle(data), separators=(",", ":"))
    overlay = candidates_overlay_png(image.pixels, masks, ids)
    return CallToolResult(content=[TextContent(type="text", text=f"{summary}\n{text}"),
                                   ImageContent(type="image", data=overlay, mime_type="image/png")],
                          structured_content=data)


def _without_rle(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_rle(v) for k, v in value.items() if k != "rle"}
    if isinstance(value, list):
        return [_without_rle(v) for v in value]
    return value


def _segment_output(image: LoadedImage, results: list) -> tuple[SegmentOutput, np.ndarray, list[int]]:
    phrases, all_masks, next_id = [], [], 1
    for result in results:
        instances = []
        for mask, score, box, rle in zip(result.masks, result.scores, result.boxes, result.rles):
            instances.append(Instance(id=next_id, score=round(float(score), 4),
                                      box_xyxy=[round(float(v), 1) for v in box], rle=Rle(**rle)))
            all_masks.append(mask)
            next_id += 1
        phrases.append(PhraseInstances(phrase=result.phrase, presence_score=round(float(result.presence_score), 4),
                                       instances=instances))
    stack = np.stack(all_masks) if all_masks else np.zeros((0, *image.size_hw), dtype=bool)
    output = SegmentOutput(image=Size(width=image.width, height=image.height), results=phrases)
    return output, stack, list(range(1, next_id))


SEGMENT_DESCRIPTION = """Find every instance of one or more simple visual concepts in an image with SAM 3.

Use it for things you can name with a short noun phrase: "person", "red car", "coffee mug", "dog". Give
several phrases at once to find several concepts in one call. It does not understand relations or
reasoning ("the cup the woman holds", "the tallest building"); use reason_segment for those, or segment
a broad phrase here and pick among the numbered instances yourself.

Pass the image as image_path (a file on this server's machine) or image_base64 (the file's bytes in
base64), not both. Optional exemplar_boxes (pixel [x1, y1, x2, y2]) mark example instances: SAM 3 then
finds things that look like them. Instances scoring at or below score_threshold are dropped.

Returns, per phrase, its presence score and each instance's id, score, box and COCO RLE mask, plus an
overlay image where each instance is drawn and labelled with its id."""

REASON_DESCRIPTION = """Answer a segmentation request that needs understanding, with a multimodal LLM that uses SAM 3.

Use it when the target is described by relations, actions, attributes or world knowledge: "the person
about to catch the frisbee", "the cup nearest to the laptop", "food that is high in vitamin C". The agent
proposes noun phrases, looks at SAM 3's numbered masks and picks the ones that answer the query.

Pass the image as image_path or image_base64, not both. To ask a follow-up about the same image ("now
only the left one"), pass the thread_id of the earlier answer: masks keep their ids across the thread.

Returns status (answered; no_mask when the target is not in the image; budget_exhausted or failed when
no answer was found, with the reason in error), the chosen masks with id, phrase, score, box and COCO
RLE, the thread_id, and an overlay image of the chosen masks. Slower than segment_phrase (several LLM
calls)."""

PathArg = Annotated[str | None, Field(description="path of the image file on the server's machine")]
Base64Arg = Annotated[str | None, Field(description="the image file's bytes in base64 (a data: URL is fine)")]


def build_mcp_server(engine_factory: Callable[[], Sam3Engine], options: McpOptions | None = None,
                     name: str = "sam3", loader: ThreadPoolExecutor | None = None,
                     ) -> tuple[MCPServer, EngineHolder[Sam3Engine]]:
    """The MCP server and the holder of its engine (close the holder when the server stops)."""
    options = options or McpOptions()
    holder: EngineHolder[Sam3Engine] = EngineHolder(engine_factory, loader)
    server = MCPServer(name, instructions=SERVER_INSTRUCTIONS, version="0.1.0")
    graph = build_graph() if options.llm is not None else None
    # one client for every query of this server: an in-process model (--llm hf:...) loads once
    llm = LLMClient(options.llm) if options.llm is not None else None
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(name="segment_phrase", description=SEGMENT_DESCRIPTION, annotations=read_only)
    async def segment_phrase(
        phrases: Annotated[list[str], Field(min_length=1, max_length=16, description="short noun phrases")],
        image_path: PathArg = None,
        image_base64: Base64Arg = None,
        score_threshold: Annotated[float, Field(ge=0.0, le=1.0, description="keep instances above this")] = (
            options.agent.score_threshold),
        exemplar_boxes: Annotated[list[list[float]] | None, Field(description="pixel [x1, y1, x2, y2] example "
                                                                              "boxes")] = None,
    ) -> Annotated[CallToolResult, SegmentOutput]:
        engine = await holder.get()
        image = await asyncio.to_thread(_load, options, image_path, image_base64)
        try:
            results = await engine.asegment(image, phrases, exemplar_boxes=exemplar_boxes,
                                            score_threshold=score_threshold, output_formats=("rle",))
        except Sam3AgentError as exc:
            raise ToolError(str(exc)) from exc
        output, masks, ids = await asyncio.to_thread(_segment_output, image, results)
        counts = ", ".join(f'"{r.phrase}": {len(r.instances)}' for r in output.results)
        return await asyncio.to_thread(_result, output, masks, ids, image, f"Instances found: {counts}.")

    @server.tool(name="reason_segment", description=REASON_DESCRIPTION, annotations=read_only)
    async def reason_segment(
        query: Annotated[str, Field(min_length=1, max_length=2000, description="what to segment, in plain words")],
        image_path: PathArg = None,
        image_base64: Base64Arg = None,
        thread_id: Annotated[str | None, Field(description="thread of an earlier answer on the same image")] = None,
    ) -> Annotated[CallToolResult, ReasonOutput]:
        if llm is None or graph is None:
            raise ToolError("reason_segment is not available: this server was started without an LLM (--llm)")
        engine = await holder.get()
        image = await asyncio.to_thread(_load, options, image_path, image_base64)
        try:
            answer = await asyncio.wait_for(run_agent(engine, llm, image, query, settings=options.agent,
                                                      thread_id=thread_id, graph=graph), options.agent_timeout_s)
        except Sam3AgentError as exc:
            raise ToolError(str(exc)) from exc
        except TimeoutError as exc:
            raise ToolError(f"the query took longer than {options.agent_timeout_s:g}s") from exc
        return await asyncio.to_thread(_reason_result, answer, image)

    return server, holder


def _reason_result(answer: Any, image: LoadedImage) -> CallToolResult:
    rles = masks_to_rle(answer.masks) if len(answer.masks) else []
    masks = [AnswerMask(id=i, phrase=p, score=round(float(s), 4), box_xyxy=[round(float(v), 1) for v in box],
                        rle=Rle(**rle))
             for i, p, s, box, rle in zip(answer.mask_ids, answer.phrases, answer.scores, answer.boxes, rles)]
    output = ReasonOutput(query=answer.query, status=answer.status, error=answer.error, mask_ids=answer.mask_ids,
                          masks=masks, thread_id=answer.thread_id, steps=answer.steps,
                          image=Size(width=image.width, height=image.height))
    summary = (f"Answer: masks {answer.mask_ids}." if answer.status == "answered"
               else f"No masks ({answer.status}). {answer.error}".strip())
    return _result(output, answer.masks, list(answer.mask_ids), image, summary)


def run_mcp_server(engine_factory: Callable[[], Sam3Engine], options: McpOptions, *, transport: str = "stdio",
                   host: str = "127.0.0.1", port: int = 8765, video_factory: Callable[[], Any] | None = None) -> None:
    """Serve over stdio (the default, for a local client) or streamable HTTP at ``http://host:port/mcp``.

    With ``video_factory`` the ``track_video`` tool is offered too (see :mod:`serving.mcp.video`).
    """
    loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sam3-load")
    server, holder = build_mcp_server(engine_factory, options, loader=loader)
    holders = [holder]
    if video_factory is not None:
        from serving.mcp.video import add_video_tool

        holders.append(add_video_tool(server, video_factory, options, loader))
    try:
        if transport == "stdio":
            server.run("stdio")
        else:
            server.run("streamable-http", host=host, port=port)
    finally:
        for each in holders:
            each.close()
        loader.shutdown(wait=False)
