"""``POST /v1/video/track``: segment and track objects through an uploaded video (SAM 3 video engine).

Only when the server runs with ``--video`` (it then loads :class:`~sam3_core.video.VideoEngine` from the
same checkpoint, a second copy of the weights). One request is one session: the video is uploaded
(multipart part ``video``, any format PyAV reads), prompted with phrases and/or clicks or a box on one
frame, propagated, and closed. Results are per frame, objects keeping their ids across frames; with
``"stream": true`` each frame is a server-sent event as soon as it is ready, then a ``done`` event.
Requests beyond the engine's session limit wait their turn (within the video timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from tools.http_agent import SSE_HEADERS
from tools.http_common import Runtime, runtime, sse, validate_json, with_timeout
from tools.http_errors import ApiError, TooLarge, classify, error_body
from tools.http_schemas import Box, ErrorResponse, Point, StrictModel

router = APIRouter(prefix="/v1/video", tags=["video"])


class VideoParams(StrictModel):
    """``/v1/video/track`` parameters (the ``params`` part of the multipart request)."""

    phrases: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=16, description="track every instance of each phrase")
    frame_index: int = Field(0, ge=0, description="the frame that points / box are on")
    points: list[Point] | None = Field(None, max_length=64, description="clicks on frame_index: a new object")
    point_labels: list[Literal[0, 1]] | None = Field(None, description="per click: 1 object, 0 background")
    box: Box | None = Field(None, description="a box on frame_index: a new object")
    start_frame: int | None = Field(None, ge=0, description="first frame (default: 0 with phrases, else the "
                                                            "prompted frame)")
    direction: Literal["forward", "backward", "both"] = "forward"
    max_frames: int | None = Field(None, ge=1, description="most frames per direction")
    masks: bool = Field(True, description="include each object's COCO RLE (false: boxes and scores only)")
    stream: bool = Field(False, description="answer as server-sent events, one per frame")


class VideoObject(BaseModel):
    object_id: int
    phrase: str | None = Field(description="the phrase that found it; null for objects from clicks or a box")
    score: float
    tracker_score: float
    box_xyxy: list[float]
    rle: dict[str, Any] | None = None


class VideoFrame(BaseModel):
    frame_index: int
    objects: list[VideoObject]


class VideoInfo(BaseModel):
    num_frames: int
    width: int
    height: int
    fps: float


class VideoResponse(BaseModel):
    video: VideoInfo
    frames: list[VideoFrame]
    elapsed_ms: float


async def _save_upload(request: Request, folder: str) -> tuple[Path, VideoParams]:
    """Write the uploaded video to ``folder``; parse ``params``."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(415, "send the video as multipart/form-data (part 'video', JSON part 'params')",
                       "unsupported_media_type")
    async with request.form(max_files=1, max_fields=4) as form:
        upload = form.get("video")
        if not isinstance(upload, UploadFile):
            raise ApiError(422, "the video file must be in the multipart part 'video'", "validation_error")
        suffix = Path(upload.filename or "video.mp4").suffix[:8] or ".mp4"
        path = Path(folder) / f"upload{suffix}"
        with path.open("wb") as out:
            while chunk := await upload.read(1 << 20):
                out.write(chunk)
        raw = form.get("params") or "{}"
    return path, validate_json(VideoParams, raw if isinstance(raw, str) else "{}", ("body", "params"))


def _open(rt: Runtime, path: Path, params: VideoParams) -> tuple[str, Any]:
    """Start the session, add the prompts and return (session id, frame iterator). Runs in a thread."""
    engine = rt.video
    session = engine.start_session(str(path))
    try:
        info = engine.session_info(session)
        height, width = info.frame_size
        if height * width > rt.settings.max_pixels:
            raise TooLarge(f"video frames are {width}x{height}, over this server's limit of {rt.settings.max_pixels}")
        if params.phrases:
            engine.add_text_prompts(session, params.phrases)
        if params.points:
            engine.add_points(session, params.frame_index, params.points, params.point_labels)
        if params.box is not None:
            engine.add_box(session, params.frame_index, params.box)
        return session, engine.propagate(session, params.start_frame, params.direction, params.max_frames)
    except BaseException:
        engine.close_session(session)
        raise


def _frame_document(frame: Any, masks: bool) -> dict[str, Any]:
    document = frame.to_json()
    if not masks:
        for obj in document["objects"]:
            obj.pop("rle", None)
    return document


def _video_info(rt: Runtime, session: str) -> dict[str, Any]:
    source = rt.video.session_source(session)
    return {"num_frames": source.num_frames, "width": source.width, "height": source.height,
            "fps": float(getattr(source, "fps", 0.0) or 0.0)}


async def _frames(rt: Runtime, path: Path, params: VideoParams) -> AsyncIterator[dict[str, Any]]:
    """Events: ``start`` (video info), one ``frame`` per frame, ``done``; the session is closed at the end."""
    async with rt.video_slots:
        session, frames = await asyncio.to_thread(_open, rt, path, params)
        try:
            yield {"type": "start", "video": await asyncio.to_thread(_video_info, rt, session)}
            count = 0
            while (frame := await asyncio.to_thread(next, frames, None)) is not None:
                count += 1
                yield {"type": "frame", "frame": await asyncio.to_thread(_frame_document, frame, params.masks)}
            yield {"type": "done", "frames": count}
        finally:
            await asyncio.to_thread(rt.video.close_session, session)


async def _collect(rt: Runtime, path: Path, params: VideoParams) -> dict[str, Any]:
    document: dict[str, Any] = {"frames": []}
    async for event in _frames(rt, path, params):
        if event["type"] == "start":
            document["video"] = event["video"]
        elif event["type"] == "frame":
            document["frames"].append(event["frame"])
    return document


async def _stream(rt: Runtime, folder: tempfile.TemporaryDirectory, path: Path,
                  params: VideoParams) -> AsyncIterator[str]:
    deadline = time.monotonic() + rt.settings.video_timeout_s
    try:
        events = _frames(rt, path, params)
        async with contextlib.aclosing(events):
            while True:
                remaining = deadline - time.monotonic()
                event = await with_timeout(anext(events, None), max(remaining, 0.001), "video tracking")
                if event is None:
                    break
                yield sse(event)
    except Exception as exc:
        error = classify(exc)
        yield sse({"type": "error", "error": error_body(error.status, error.message, error.code)["error"]})
    finally:
        folder.cleanup()


_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse, "description": text} for code, text in (
    (400, "unreadable video, bad frame index or prompt"), (413, "video over the size or pixel limits"),
    (422, "params do not match the schema"), (503, "video is not enabled or still loading"),
    (504, "tracking ran past the video timeout"))}
_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["video"], "properties": {
        "video": {"type": "string", "format": "binary", "description": "the video file (mp4, webm, ...)"},
        "params": {"type": "string", "description": "a JSON object of VideoParams"}}}}}}}


@router.post("/track", response_model=VideoResponse, responses=_ERRORS, openapi_extra=_BODY,
             summary="Segment and track objects through a video")
async def track(request: Request) -> Any:
    """Track every instance of the phrases (and/or the object clicked or boxed on ``frame_index``)."""
    rt = runtime(request)
    rt.require_video()
    folder = tempfile.TemporaryDirectory(prefix="sam3-video-")
    try:
        path, params = await _save_upload(request, folder.name)
        if not params.phrases and not params.points and params.box is None:
            raise ApiError(400, "give phrases, points or a box to track", "bad_input")
    except BaseException:
        folder.cleanup()
        raise
    if params.stream:
        return StreamingResponse(_stream(rt, folder, path, params), media_type="text/event-stream",
                                 headers=SSE_HEADERS)
    start = time.perf_counter()
    try:
        document = await with_timeout(_collect(rt, path, params), rt.settings.video_timeout_s, "video tracking")
    finally:
        folder.cleanup()
    document["elapsed_ms"] = round((time.perf_counter() - start) * 1000, 2)
    return JSONResponse(document)
