"""The HTTP API's video sessions: one :class:`VideoSessionStore` per app, over the app's :class:`VideoEngine`.

The store owns what the engine does not: a slot per session (``video_max_sessions``, shared by the
session endpoints and ``/v1/video/track``), a temporary folder holding the uploaded videos (one
sub-folder per session, deleted when the session closes, expires or the app shuts down), the idle
timeout (a background sweep, plus a check on every request) and a busy flag, so one session runs
one request at a time. It also holds what both video routes share: applying prompts and turning a
propagation into events (``frame`` per frame, then ``done``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sam3_core.errors import UsageError, VideoError
from sam3_core.video import FrameResult, ObjectUpdate, VideoEngine
from sam3_core.video.progress import PropagationProgress, frames_to_visit, with_progress
from serving.http.errors import ApiError, TooLarge
from serving.http.schemas import VideoPromptFields, VideoPropagateFields

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class OpenSession:
    """One session of the store: the engine's session id, its video and the upload folder it owns."""

    session_id: str
    video: dict[str, Any]
    folder: Path | None
    last_used: float
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def num_frames(self) -> int:
        return int(self.video["num_frames"])


def unknown_session(session_id: str) -> ApiError:
    return ApiError(404, f"unknown or expired video session {session_id!r}; start one with POST /v1/video/sessions",
                    "unknown_session")


def check_frame(session: OpenSession, index: int, what: str) -> None:
    """HTTP 400 ``bad_frame_index`` unless ``index`` is a frame of the session's video."""
    if not 0 <= index < session.num_frames:
        raise ApiError(400, f"{what} {index} is out of range: the video has {session.num_frames} frames "
                            f"(0..{session.num_frames - 1})", "bad_frame_index")


def ensure_free(session: OpenSession) -> None:
    """HTTP 409 ``session_busy`` while another request is using the session."""
    if session.busy.locked():
        raise ApiError(409, f"video session {session.session_id} is busy with another request (one at a time)",
                       "session_busy")


def remove_folder(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


class VideoSessionStore:
    """Open video sessions of one app (all methods run on the event loop; model work goes to threads).

    Args:
        engine: returns the loaded video engine (called only once video is ready).
        slots: one permit per open session; its size is the session cap.
        idle_timeout_s: sessions unused (and not busy) for this long are closed.
        max_pixels: videos with larger frames are refused (HTTP 413).
    """

    def __init__(self, engine: Callable[[], VideoEngine], slots: asyncio.Semaphore, *, idle_timeout_s: float,
                 max_pixels: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine, self._slots, self._clock = engine, slots, clock
        self.idle_timeout_s, self.max_pixels = idle_timeout_s, max_pixels
        self._sessions: dict[str, OpenSession] = {}
        self._root: Path | None = None
        self._background: set[asyncio.Future] = set()

    @property
    def engine(self) -> VideoEngine:
        return self._engine()

    @property
    def root(self) -> Path:
        """The app's temporary folder for uploads (made on first use, removed by :meth:`shutdown`)."""
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="sam3-video-"))
        return self._root

    def new_folder(self) -> Path:
        """An empty folder for one upload, inside :attr:`root`."""
        return Path(tempfile.mkdtemp(dir=self.root))

    def session_ids(self) -> list[str]:
        return list(self._sessions)

    def full(self) -> bool:
        """True when no session can start now (waiters count as holding slots)."""
        return self._slots.locked()

    def too_many(self) -> ApiError:
        return ApiError(429, f"{len(self._sessions)} video sessions are open, the most this server allows; "
                             "close one (DELETE /v1/video/sessions/{id}) or retry later", "too_many_sessions")

    # -- life cycle --------------------------------------------------------------------------------

    async def open(self, video: Path, folder: Path | None, *, wait: bool) -> OpenSession:
        """Start a session on ``video``; ``folder`` (if any) becomes the session's and is deleted with it.

        Without ``wait`` a full store answers HTTP 429 at once; with it the call waits for a slot.
        """
        try:
            await self.expire_idle()
            if not wait and self.full():
                raise self.too_many()
            await self._slots.acquire()
        except BaseException:
            remove_folder(folder)
            raise
        starting = asyncio.ensure_future(asyncio.to_thread(self._start, video))
        try:
            session_id, info = await asyncio.shield(starting)  # a cancelled caller must not leak the session
        except BaseException:
            self._slots.release()
            if starting.done() and (starting.cancelled() or starting.exception() is not None):
                remove_folder(folder)  # it failed: nothing was opened
            else:  # the caller gave up (timeout, disconnect) while the video opened: clean up after it
                starting.add_done_callback(functools.partial(self._discard, folder=folder))
            raise
        session = OpenSession(session_id, info, folder, self._clock())
        self._sessions[session_id] = session
        logger.info("video session %s opened (%d frames)", session_id, session.num_frames)
        return session

    def _discard(self, starting: asyncio.Future, folder: Path | None) -> None:
        """Once a failed or abandoned start is over: close the engine session it may have opened, delete the upload."""
        session_id = None
        if not starting.cancelled() and starting.exception() is None:
            session_id = starting.result()[0]
            logger.info("video session %s closed: its request gave up while it opened", session_id)
        task = asyncio.ensure_future(asyncio.to_thread(self._discard_now, session_id, folder))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _discard_now(self, session_id: str | None, folder: Path | None) -> None:
        if session_id is not None:
            with contextlib.suppress(VideoError):
                self.engine.close_session(session_id)
        remove_folder(folder)

    def _start(self, video: Path) -> tuple[str, dict[str, Any]]:
        """Open the engine session and check the frame size. Runs in a thread."""
        engine = self.engine
        try:
            session_id = engine.start_session(str(video))
        except UsageError as exc:  # the engine's own cap, when it is lower than the store's
            raise self.too_many() from exc
        try:
            source = engine.session_source(session_id)
            if source.height * source.width > self.max_pixels:
                raise TooLarge(f"video frames are {source.width}x{source.height}, over this server's limit of "
                               f"{self.max_pixels} pixels")
            return session_id, {"num_frames": source.num_frames, "width": source.width, "height": source.height,
                                "fps": float(getattr(source, "fps", 0.0) or 0.0)}
        except BaseException:
            engine.close_session(session_id)
            raise

    async def close(self, session_id: str, reason: str = "closed") -> bool:
        """Close a session, free its slot and delete its upload; False if it was not open."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        self._slots.release()
        with contextlib.suppress(VideoError):  # the engine may have closed it already (its own idle timeout)
            await asyncio.to_thread(self.engine.close_session, session_id)
        await asyncio.to_thread(remove_folder, session.folder)
        logger.info("video session %s %s", session_id, reason)
        return True

    async def expire_idle(self) -> list[str]:
        """Close the sessions idle (and not busy) for longer than the timeout; returns their ids."""
        now = self._clock()
        idle = [s.session_id for s in self._sessions.values()
                if not s.busy.locked() and now - s.last_used > self.idle_timeout_s]
        for session_id in idle:
            await self.close(session_id, f"closed after {self.idle_timeout_s:g} s idle")
        return idle

    async def sweep_forever(self) -> None:
        """Expire idle sessions periodically (a background task of the app)."""
        interval = min(max(self.idle_timeout_s / 4, 0.05), 30.0)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.expire_idle()
            except Exception:  # keep sweeping; the next round retries
                logger.exception("expiring idle video sessions failed")

    async def shutdown(self) -> None:
        """Close every session and remove the upload folder."""
        await asyncio.gather(*self._background, return_exceptions=True)
        for session_id in list(self._sessions):
            await self.close(session_id, "closed at shutdown")
        if self._root is not None:
            await asyncio.to_thread(shutil.rmtree, self._root, True)
            self._root = None

    # -- use ---------------------------------------------------------------------------------------

    async def get(self, session_id: str) -> OpenSession:
        """The open session (marked used now), or HTTP 404."""
        await self.expire_idle()
        session = self._sessions.get(session_id)
        if session is None:
            raise unknown_session(session_id)
        session.last_used = self._clock()
        return session

    @contextlib.asynccontextmanager
    async def use(self, session_id: str) -> AsyncIterator[OpenSession]:
        """Hold the session for one request: HTTP 404 if unknown, 409 if another request is using it."""
        session = await self.get(session_id)
        ensure_free(session)
        async with session.busy:
            try:
                yield session
            finally:
                session.last_used = self._clock()

    async def call(self, session: OpenSession, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a thread; an engine error for a session the engine no longer has becomes 404."""
        try:
            result = await asyncio.to_thread(fn, *args)
        except VideoError:
            if session.session_id not in await asyncio.to_thread(self.engine.session_ids):
                await self.close(session.session_id, "was gone from the engine")
                raise unknown_session(session.session_id) from None
            raise
        session.last_used = self._clock()
        return result

    async def object_ids(self, session: OpenSession) -> list[int]:
        return (await self.call(session, self.engine.session_info, session.session_id)).object_ids

    async def describe(self, session: OpenSession) -> dict[str, Any]:
        """The session document of ``GET /v1/video/sessions/{id}``."""
        info = await self.call(session, self.engine.session_info, session.session_id)
        return {"session_id": session.session_id, "video": session.video, "phrases": info.phrases,
                "object_ids": info.object_ids, "idle_timeout_s": self.idle_timeout_s}


# -- what the session routes and /v1/video/track share --------------------------------------------


async def apply_prompts(store: VideoSessionStore, session: OpenSession, prompt: VideoPromptFields,
                        object_id: int | None = None) -> ObjectUpdate | None:
    """Add the phrases, then the box, then the clicks (box and clicks prompt one object); the last update."""
    engine, sid = store.engine, session.session_id
    if prompt.points or prompt.box is not None:
        check_frame(session, prompt.frame_index, "frame_index")
    if object_id is not None and object_id not in await store.object_ids(session):
        raise ApiError(404, f"unknown object {object_id} in video session {sid}", "unknown_object")
    update = None
    if prompt.phrases:
        await store.call(session, engine.add_text_prompts, sid, prompt.phrases)
    if prompt.box is not None:
        update = await store.call(session, engine.add_box, sid, prompt.frame_index, prompt.box, object_id)
        object_id = update.object_id
    if prompt.points:
        update = await store.call(session, engine.add_points, sid, prompt.frame_index, prompt.points,
                                  prompt.point_labels, object_id)
    return update


def frame_document(frame: Any, masks: bool) -> dict[str, Any]:
    """A :class:`FrameResult` as JSON, without RLEs unless ``masks``."""
    document = frame.to_json()
    if not masks:
        for obj in document["objects"]:
            obj.pop("rle", None)
    return document


def frames_total(session: OpenSession, params: VideoPropagateFields, default_start: int | None) -> int | None:
    """Frames a propagation will visit, when its start frame is known (``params.start_frame``, else
    ``default_start``); None otherwise."""
    start = params.start_frame if params.start_frame is not None else default_start
    if start is None or not 0 <= start < session.num_frames:
        return None
    return frames_to_visit(session.num_frames, start, params.direction, params.max_frames)


async def start_propagation(store: VideoSessionStore, session: OpenSession,
                            params: VideoPropagateFields) -> Iterator[FrameResult]:
    """The engine's frame generator; arguments and prompts are checked now (nothing runs until iterated)."""
    if params.start_frame is not None:
        check_frame(session, params.start_frame, "start_frame")
    return await store.call(session, store.engine.propagate, session.session_id, params.start_frame,
                            params.direction, params.max_frames)


async def frame_events(store: VideoSessionStore, session: OpenSession, frames: Iterator[FrameResult],
                       masks: bool, total: int | None = None) -> AsyncIterator[dict[str, Any]]:
    """One ``frame`` event per frame of ``frames`` as soon as it is ready, ``progress`` events (frames done of
    ``total``, fps, objects on the latest frame; after the first frame, then at most every half second, and
    once with ``done`` at the end), then ``done``."""
    reports: list[PropagationProgress] = []  # appended in the worker thread, drained here
    reporting = with_progress(frames, reports.append, total=total)
    count = 0
    try:
        while (frame := await store.call(session, next, reporting, None)) is not None:
            count += 1
            yield {"type": "frame", "frame": await asyncio.to_thread(frame_document, frame, masks)}
            while reports:
                yield {"type": "progress", **reports.pop(0).to_json()}
    finally:
        with contextlib.suppress(ValueError):  # still running in a thread after a timeout: left to the GC
            reporting.close()
            frames.close()
    while reports:
        yield {"type": "progress", **reports.pop(0).to_json()}
    yield {"type": "done", "frames": count}
