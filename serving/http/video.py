"""Video endpoints (only when the server runs with ``--video``): sessions, and one-shot ``/v1/video/track``.

==================================================  ==============================================================
``POST   /v1/video/sessions``                       open a video: multipart upload (part ``video``, any format
                                                    PyAV reads) or JSON ``{"path"}`` under the server's video root;
                                                    201 with the session (id, frames, size, fps)
``GET    /v1/video/sessions/{id}``                  the session: video, phrases, tracked object ids
``POST   /v1/video/sessions/{id}/prompts``          phrases, and/or clicks or a box on one frame for a new object
                                                    (or ``object_id``); answers that frame's objects
``DELETE /v1/video/sessions/{id}/objects/{obj}``    stop tracking one object
``POST   /v1/video/sessions/{id}/propagate``        results frame by frame: server-sent events (``frame`` per
                                                    frame, ``progress``, then ``done``), or one JSON document
                                                    with ``stream: false``
``DELETE /v1/video/sessions/{id}``                  close the session and delete its upload (204)
``POST   /v1/video/track``                          all of the above in one request: upload, prompt, propagate, close
``POST   /v1/video/agent``                          a query answered by the video agent with masklets (streamed
                                                    steps and progress; :mod:`serving.http.video_agent`)
==================================================  ==============================================================

Errors (as everywhere, ``{"error": {...}}``): 400 unreadable video, bad prompt or frame index
(``bad_frame_index``), 403 a server-side path when no video root is set or outside it, 404 unknown or
expired session (``unknown_session``) or object (``unknown_object``), 409 the session is busy with
another request (``session_busy``: one request per session at a time), 413 an upload over the body
limit or frames over the pixel limit, 429 ``video_max_sessions`` sessions are open
(``too_many_sessions``; ``/v1/video/track`` instead waits for a slot), 503 video off or loading,
504 past the video timeout. Sessions unused for ``video_idle_timeout_s`` are closed. Uploads live in
a temporary folder of the app, deleted with their session (see :mod:`serving.http.video_sessions`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from serving.http.agent import SSE_HEADERS
from serving.http.common import runtime, sse, until_disconnected, validate_json, with_timeout
from serving.http.errors import ApiError, classify, error_body
from serving.http.examples import ObjectId, SessionId, form_hint, multipart_content
from serving.http.forms import MAX_FIELDS, form_error, params_from_form, text_parts
from serving.http.schemas import (
    ErrorResponse,
    NoParams,
    VideoFramesResponse,
    VideoParams,
    VideoPrompt,
    VideoPromptResponse,
    VideoPropagate,
    VideoResponse,
    VideoSessionCreate,
    VideoSessionOut,
)
from serving.http.video_sessions import (
    OpenSession,
    VideoSessionStore,
    apply_prompts,
    ensure_free,
    frame_document,
    frame_events,
    frames_total,
    remove_folder,
    start_propagation,
)

router = APIRouter(prefix="/v1/video", tags=["video"])


def _store(request: Request) -> VideoSessionStore:
    """The app's session store; 503 while video is off or loading."""
    runtime(request).require_video()
    return request.app.state.video_sessions


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "unreadable video, bad prompt or frame index", 403: "server-side path not allowed",
            404: "unknown or expired session, or unknown object", 409: "the session is busy with another request",
            413: "video over the size or pixel limits", 415: "neither multipart nor JSON",
            422: "the body does not match the schema", 429: "too many video sessions are open",
            503: "video is not enabled or still loading", 504: "ran past the video timeout"}
    return {code: {"model": ErrorResponse, "description": text[code]} for code in codes}


def _upload_body(params: type[BaseModel] | None, json_model: str | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"multipart/form-data": multipart_content(params, "video",
                                                                        "the video file (mp4, webm, ...)")}
    if json_model:
        content["application/json"] = {"schema": {"$ref": f"#/components/schemas/{json_model}"}}
    return {"requestBody": {"required": True, "content": content}}


async def _save_upload(request: Request, folder: Path,
                       params_model: type[BaseModel] = NoParams) -> tuple[Path, list[tuple[str, str]]]:
    """Write the multipart part ``video`` into ``folder``; returns its path and the form's text parts."""
    async with request.form(max_files=1, max_fields=MAX_FIELDS) as form:
        upload = form.get("video")
        if not isinstance(upload, UploadFile):
            problem = "the part 'video' is text, not a file" if upload is not None else "no file part 'video'"
            raise form_error(problem, params_model, "video")
        suffix = Path(upload.filename or "video.mp4").suffix[:8] or ".mp4"
        path = folder / f"upload{suffix}"
        with path.open("wb") as out:
            while chunk := await upload.read(1 << 20):
                out.write(chunk)
        parts = [(name, value) for name, value in text_parts(form) if name != "video"]
    return path, parts


def _content_kind(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


ParamsT = TypeVar("ParamsT", bound=BaseModel)


async def receive_video_form(request: Request, store: VideoSessionStore, params_model: type[ParamsT],
                             what: str = "video") -> tuple[Path, Path, ParamsT]:
    """A multipart video upload saved into a new upload folder, and its fields read as ``params_model``:
    ``(folder, video path, params)``. 415 for another content type, 4xx for a bad form; when anything fails
    the folder is removed, so a refused upload leaves nothing on disk."""
    if _content_kind(request) != "multipart/form-data":
        raise ApiError(415, f"send the {what} as multipart/form-data: {form_hint(params_model, 'video')}",
                       "unsupported_media_type")
    folder = store.new_folder()
    try:
        path, parts = await _save_upload(request, folder, params_model)
        return folder, path, params_from_form(parts, params_model, "video")
    except BaseException:
        remove_folder(folder)
        raise


def _server_path(root: str | None, raw: str) -> Path:
    """``raw`` resolved under the video root; 403 without a root or outside it, 400 if missing."""
    if root is None:
        raise ApiError(403, "this server opens no server-side paths (start it with --video-root); upload the "
                            "video as multipart instead", "path_not_allowed")
    base = Path(root).resolve()
    path = (base / raw).resolve()
    if not path.is_relative_to(base):
        raise ApiError(403, f"{raw!r} is outside the server's video root", "path_not_allowed")
    if not path.exists():
        raise ApiError(400, f"no video at {raw!r} under the server's video root", "bad_input")
    return path


def _error_event(exc: BaseException) -> str:
    error = classify(exc)
    return sse({"type": "error", "error": error_body(error.status, error.message, error.code)["error"]})


async def _sse_stream(events: AsyncIterator[dict[str, Any]], seconds: float) -> AsyncIterator[str]:
    """``events`` as server-sent events, within ``seconds``; a failure becomes a last ``error`` event."""
    deadline = time.monotonic() + seconds
    try:
        async with contextlib.aclosing(events):
            while True:
                remaining = max(deadline - time.monotonic(), 0.001)
                event = await with_timeout(anext(events, None), remaining, "video tracking")
                if event is None:
                    break
                yield sse(event)
    except Exception as exc:
        yield _error_event(exc)


async def _collect(events: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """The events of a run as one document: ``video`` (from ``start``) and ``frames``."""
    document: dict[str, Any] = {"frames": []}
    async with contextlib.aclosing(events):
        async for event in events:
            if event["type"] == "start":
                document["video"] = event["video"]
            elif event["type"] == "frame":
                document["frames"].append(event["frame"])
    return document


# ------------------------------------------------------------------------------------------ track


async def _track_events(store: VideoSessionStore, path: Path, folder: Path,
                        params: VideoParams) -> AsyncIterator[dict[str, Any]]:
    """One session from start to close: ``start`` (video info), one ``frame`` per frame, ``done``."""
    session = await store.open(path, folder, wait=True)
    try:
        async with store.use(session.session_id):
            await apply_prompts(store, session, params)
            frames = await start_propagation(store, session, params)
            yield {"type": "start", "video": session.video}
            # The engine starts at frame 0 with phrases, else at the prompted frame.
            total = frames_total(session, params, 0 if params.phrases else params.frame_index)
            async for event in frame_events(store, session, frames, params.masks, total):
                yield event
    finally:
        await store.close(session.session_id)


@router.post("/track", response_model=VideoResponse, responses=_errors(400, 413, 415, 422, 503, 504),
             openapi_extra=_upload_body(VideoParams), summary="Segment and track objects through a video")
async def track(request: Request) -> Any:
    """Track every instance of the phrases (and/or the object clicked or boxed on ``frame_index``).

    One request is one session (waiting for a free one); ``"stream": true`` answers as server-sent events.
    """
    store, settings = _store(request), runtime(request).settings
    folder, path, params = await receive_video_form(request, store, VideoParams)
    if not params.phrases and not params.points and params.box is None:
        remove_folder(folder)
        raise ApiError(400, "give phrases, points or a box to track", "bad_input")
    events = _track_events(store, path, folder, params)
    if params.stream:
        return StreamingResponse(_sse_stream(events, settings.video_timeout_s), media_type="text/event-stream",
                                 headers=SSE_HEADERS)
    start = time.perf_counter()
    # A client that leaves cancels the tracking (the session closes and its upload is deleted).
    document = await until_disconnected(request, with_timeout(_collect(events), settings.video_timeout_s,
                                                              "video tracking"))
    document["elapsed_ms"] = round((time.perf_counter() - start) * 1000, 2)
    return JSONResponse(document)


# ------------------------------------------------------------------------------------------ sessions


async def _video_source(request: Request, store: VideoSessionStore) -> tuple[Path, Path | None]:
    """The video to open and the upload folder holding it (None for a server-side path)."""
    kind = _content_kind(request)
    if kind == "application/json":
        body = validate_json(VideoSessionCreate, await request.body(), ("body",))
        return _server_path(runtime(request).settings.video_root, body.path), None
    if kind != "multipart/form-data":
        raise ApiError(415, "upload the video as multipart/form-data (part 'video'), or send JSON {\"path\": ...}",
                       "unsupported_media_type")
    if store.full():
        raise store.too_many()  # before reading a large upload
    folder = store.new_folder()
    try:
        path, _ = await _save_upload(request, folder)
    except BaseException:
        remove_folder(folder)
        raise
    return path, folder


@router.post("/sessions", status_code=201, response_model=VideoSessionOut,
             responses=_errors(400, 403, 413, 415, 422, 429, 503),
             openapi_extra=_upload_body(None, "VideoSessionCreate"), summary="Open a video session")
async def create_session(request: Request) -> JSONResponse:
    """Open an uploaded video (or one under the server's video root) for prompting and propagation."""
    store = _store(request)
    path, folder = await _video_source(request, store)
    session = await store.open(path, folder, wait=False)
    return JSONResponse(await store.describe(session), status_code=201)


@router.get("/sessions/{session_id}", response_model=VideoSessionOut, responses=_errors(404, 503),
            summary="A video session")
async def get_session(session_id: SessionId, request: Request) -> JSONResponse:
    """The session's video, phrases and tracked objects."""
    store = _store(request)
    return JSONResponse(await store.describe(await store.get(session_id)))


@router.delete("/sessions/{session_id}", status_code=204, responses=_errors(404, 503),
               summary="Close a video session")
async def close_session(session_id: SessionId, request: Request) -> Response:
    """Close the session (even while it propagates: that stream then ends with an error) and delete its upload."""
    if not await _store(request).close(session_id):
        raise ApiError(404, f"unknown or expired video session {session_id!r}", "unknown_session")
    return Response(status_code=204)


@router.post("/sessions/{session_id}/prompts", response_model=VideoPromptResponse,
             responses=_errors(400, 404, 409, 503, 504), summary="Prompt a video session")
async def prompt_session(session_id: SessionId, body: VideoPrompt, request: Request) -> JSONResponse:
    """Add phrases (tracked while propagating) and/or clicks or a box on ``frame_index``.

    Clicks / a box start a new object, or refine ``object_id``; the answer then has every object on that frame.
    """
    store = _store(request)
    if not body.phrases and not body.points and body.box is None:
        raise ApiError(400, "give phrases, points or a box", "bad_input")
    if body.object_id is not None and not body.points and body.box is None:
        raise ApiError(400, "object_id needs points or a box", "bad_input")

    async def work() -> dict[str, Any]:
        async with store.use(session_id) as session:
            update = await apply_prompts(store, session, body, body.object_id)
            described = await store.describe(session)
        frame = frame_document(update.frame, body.masks) if update is not None else None
        return {"session_id": session_id, "phrases": described["phrases"],
                "object_id": update.object_id if update is not None else None, "frame": frame}

    return JSONResponse(await with_timeout(work(), runtime(request).settings.video_timeout_s, "prompting"))


@router.delete("/sessions/{session_id}/objects/{object_id}", response_model=VideoSessionOut,
               responses=_errors(404, 409, 503), summary="Stop tracking one object")
async def remove_object(session_id: SessionId, object_id: ObjectId, request: Request) -> JSONResponse:
    """Drop the object from later results (a phrase may find the same thing again, as a new object)."""
    store = _store(request)
    async with store.use(session_id) as session:
        if object_id not in await store.object_ids(session):
            raise ApiError(404, f"unknown object {object_id} in video session {session_id}", "unknown_object")
        await store.call(session, store.engine.remove_object, session_id, object_id)
        return JSONResponse(await store.describe(session))


async def _session_events(store: VideoSessionStore, session_id: str,
                          params: VideoPropagate) -> AsyncIterator[dict[str, Any]]:
    async with store.use(session_id) as session:
        frames = await start_propagation(store, session, params)
        async for event in frame_events(store, session, frames, params.masks, frames_total(session, params, None)):
            yield event


async def _precheck(store: VideoSessionStore, session_id: str, params: VideoPropagate) -> OpenSession:
    """Errors a stream should answer with a status, checked before it starts (404, 409, 400)."""
    session = await store.get(session_id)
    ensure_free(session)
    (await start_propagation(store, session, params)).close()
    return session


_EVENTS = {200: {"description": "server-sent events (VideoEvent), or with stream=false one JSON document",
                 "content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/VideoEvent"}}}}}


@router.post("/sessions/{session_id}/propagate", response_model=VideoFramesResponse,
             responses={**_errors(400, 404, 409, 503, 504), **_EVENTS}, summary="Results frame by frame (streamed)")
async def propagate(session_id: SessionId, body: VideoPropagate, request: Request) -> Response:
    """Track the session's phrases and objects from ``start_frame``; server-sent events unless ``stream`` is false.

    Events: one ``frame`` per frame as soon as it is ready, ``progress`` (``frames_done``, ``total``, ``fps``,
    ``objects``; at most every half second and once at the end), then ``done`` (or ``error``).
    """
    store, seconds = _store(request), runtime(request).settings.video_timeout_s
    await _precheck(store, session_id, body)
    if body.stream:
        return StreamingResponse(_sse_stream(_session_events(store, session_id, body), seconds),
                                 media_type="text/event-stream", headers=SSE_HEADERS)
    start = time.perf_counter()
    document = await until_disconnected(request, with_timeout(_collect(_session_events(store, session_id, body)),
                                                              seconds, "propagation"))
    return JSONResponse({"session_id": session_id, "frames": document["frames"],
                         "elapsed_ms": round((time.perf_counter() - start) * 1000, 2)})
