"""Masklets: objects tracked through a video by SAM 3, as the video agent keeps them during one query.

A masklet is one object of one engine session followed frame by frame. The agent numbers masklets
itself (ids from 1, never reused within a query, like the image agent's mask ids): every phrase is
tracked in an engine session of its own, whose object ids would collide with other sessions', and a
refined masklet keeps its id although a new session tracks it. A masklet's id is the same on every
frame, in every overlay and in the answer's YouTube-VIS document (its ``object_id``).

* :class:`Track` -- a masklet's masks: per frame a COCO RLE, a pixel box and an area (never arrays of
  the whole video).
* :class:`MaskletStore` -- the tracks of one query and the engine sessions that can still extend them.
  It lives in the run context and is never checkpointed; the graph state holds only the light
  :class:`MaskletRecord` of each masklet.
* :func:`track_phrase`, :func:`refine_track`, :func:`complete_tracks` -- the engine work. They block
  (SAM 3 runs frame after frame), so the tools run them in a worker thread.

Coverage: when ``VideoAgentSettings.max_frames`` bounds the exploration, a phrase is tracked over the
first frames only; its tracks remember the frame where tracking would go on (``next_frame``) and their
session stays open, so :func:`complete_tracks` can carry the chosen masklets to the end of the video.
Every session is closed by :meth:`MaskletStore.close` when the query ends.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypedDict

from pycocotools import mask as mask_utils

from sam3_core.errors import VideoError
from sam3_core.video import FrameResult, VideoEngine

logger = logging.getLogger(__name__)


class FrameMask(NamedTuple):
    """A masklet on one frame: COCO RLE, tight pixel box ``x1, y1, x2, y2`` (x2/y2 exclusive), area."""

    rle: dict[str, Any]
    box: tuple[float, float, float, float]
    area: int


@dataclass
class Track:
    """One masklet's masks and where they come from.

    Attributes:
        phrase: the phrase that found the object. score: its best detection score.
        frames: frame index -> :class:`FrameMask`, for the frames the object is on.
        session_id / object_id: the engine session and object that can extend the track.
        next_frame: the first frame not tracked yet (tracking continues forward from it); None when the
            track already covers the whole video.
    """

    phrase: str | None
    score: float
    frames: dict[int, FrameMask] = field(default_factory=dict)
    session_id: str | None = None
    object_id: int = -1
    next_frame: int | None = None

    def present(self) -> list[int]:
        """The frames the masklet is on, in order."""
        return sorted(self.frames)

    def covered_until(self, num_frames: int) -> int:
        """Frames ``[0, covered_until)`` have been tracked."""
        return num_frames if self.next_frame is None else self.next_frame

    def to_json(self) -> dict[str, Any]:
        """The track as plain JSON (frame keys as strings); the engine session is left out: it ends with the query."""
        frames = {str(i): {"rle": m.rle, "box": list(m.box), "area": m.area} for i, m in self.frames.items()}
        return {"phrase": self.phrase, "score": self.score, "object_id": self.object_id,
                "next_frame": self.next_frame, "frames": frames}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Track:
        """A track from :meth:`to_json` (no session: it is never extended). KeyError/TypeError/ValueError when
        ``data`` is not one."""
        frames = {}
        for index, mask in data["frames"].items():
            x1, y1, x2, y2 = (float(v) for v in mask["box"])
            rle = {"size": [int(v) for v in mask["rle"]["size"]], "counts": mask["rle"]["counts"]}
            if not isinstance(rle["counts"], (str, list)):
                raise TypeError(f"frame {index}: RLE counts must be a string or a list")
            frames[int(index)] = FrameMask(rle, (x1, y1, x2, y2), int(mask["area"]))
        next_frame = data["next_frame"]
        return cls(data["phrase"] if data["phrase"] is None else str(data["phrase"]), float(data["score"]), frames,
                   None, int(data["object_id"]), None if next_frame is None else int(next_frame))


class MaskletRecord(TypedDict):
    """A masklet as the graph state keeps it (plain JSON; the masks stay in the :class:`MaskletStore`).

    Keys shared with :class:`agent.state.MaskRecord`: ``id``, ``phrase``, ``score``, ``status`` (always
    ``"candidate"``: videos have no per-mask verification), ``verified``; ``box``/``area`` on the frame
    where the masklet is largest. Video keys: ``first_frame``, ``last_frame``, ``num_frames`` (frames
    it is on) and ``revision`` (how many times ``refine_masklet`` changed it; overlays are cached by it).
    """

    id: int
    phrase: str
    score: float
    box: list[float]
    area: int
    status: Literal["candidate", "rejected"]
    verified: bool
    first_frame: int
    last_frame: int
    num_frames: int
    revision: int


def masklet_record(masklet_id: int, track: Track, revision: int = 0) -> MaskletRecord:
    """The state record of a masklet (its track must be on at least one frame)."""
    frames = track.present()
    largest = max(track.frames.values(), key=lambda m: m.area)
    return MaskletRecord(
        id=masklet_id, phrase=track.phrase or "", score=round(track.score, 4),
        box=[round(v, 1) for v in largest.box], area=largest.area, status="candidate", verified=False,
        first_frame=frames[0], last_frame=frames[-1], num_frames=len(frames), revision=revision,
    )


class MaskletStore:
    """The masklet tracks of one query and the engine sessions they came from (thread-safe).

    Sessions are opened through :meth:`open_session`, so every one is closed by :meth:`close` when the
    query ends, also one opened by a tool that was abandoned at the query's deadline.
    """

    def __init__(self) -> None:
        self._tracks: dict[int, Track] = {}
        self._sessions: set[str] = set()
        self._closed = False
        self._lock = threading.Lock()

    def get(self, masklet_id: int) -> Track | None:
        """The track of a masklet, or None."""
        with self._lock:
            return self._tracks.get(masklet_id)

    def put(self, masklet_id: int, track: Track) -> None:
        """Store (or replace) a masklet's track."""
        with self._lock:
            self._tracks[masklet_id] = track

    def tracks(self, ids: Iterable[int]) -> dict[int, Track]:
        """``{id: track}`` for the ids that have a track, in the given order."""
        with self._lock:
            return {i: self._tracks[i] for i in ids if i in self._tracks}

    def carried(self) -> MaskletStore:
        """A new, open store with this store's tracks, for the next query on the same thread. The tracks' engine
        sessions are not carried (they close with this store), so they are never extended again."""
        store = MaskletStore()
        with self._lock:
            store._tracks = {i: dataclasses.replace(t, session_id=None) for i, t in self._tracks.items()}
        return store

    def to_json(self) -> dict[str, Any]:
        """The tracks as plain JSON, ``{"<masklet id>": track}`` (sessions are not saved)."""
        with self._lock:
            return {str(i): t.to_json() for i, t in self._tracks.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MaskletStore:
        """An open store with the tracks of :meth:`to_json` (as :meth:`carried`: none can be extended)."""
        store = cls()
        store._tracks = {int(i): Track.from_json(t) for i, t in data.items()}
        return store

    def open_session(self, engine: VideoEngine, video: Any) -> str:
        """Start an engine session on ``video``, to be closed with the store; VideoError once it is closed."""
        with self._lock:
            if self._closed:
                raise VideoError("the query has ended; no more video sessions are opened for it")
            session_id = engine.start_session(video)
            self._sessions.add(session_id)
            return session_id

    def release(self, engine: VideoEngine, session_id: str) -> None:
        """Close a session no track needs any more."""
        with self._lock:
            if session_id in self._sessions:
                self._sessions.discard(session_id)
                engine.close_session(session_id)

    def close(self, engine: VideoEngine) -> None:
        """Close every session still open; later :meth:`open_session` calls fail."""
        with self._lock:
            self._closed = True
            sessions, self._sessions = sorted(self._sessions), set()
        for session_id in sessions:
            try:
                engine.close_session(session_id)
            except VideoError:  # closed by the engine already (idle timeout)
                logger.debug("video session %s was already closed", session_id)


# ----------------------------------------------------------------------------------- engine work


def _collect(results: Iterable[FrameResult], tracks: dict[int, Track], only: set[int] | None = None) -> None:
    """Add every object of ``results`` (or those in ``only``) to ``tracks``, keyed by engine object id."""
    for result in results:
        for index, obj_id in enumerate(result.object_ids):
            if only is not None and obj_id not in only:
                continue
            score = float(result.scores[index])
            track = tracks.setdefault(obj_id, Track(result.phrases[index], score, object_id=obj_id))
            track.score = max(track.score, score)
            box = tuple(float(v) for v in result.boxes[index])
            track.frames[result.frame_index] = FrameMask(result.rles[index], box, int(result.masks[index].sum()))


def _end(limit: int | None, num_frames: int) -> int:
    """The end (exclusive) of frames ``[0, limit)`` within the video."""
    return num_frames if limit is None else min(limit, num_frames)


def track_phrase(engine: VideoEngine, store: MaskletStore, video: Any, phrase: str, limit: int | None,
                 num_frames: int) -> dict[int, Track]:
    """Track every instance of ``phrase`` over frames ``[0, limit)`` in a new session; tracks by object id.

    The session stays open (in ``store``) when the tracks do not reach the end of the video yet.
    """
    session_id = store.open_session(engine, video)
    engine.add_text_prompts(session_id, [phrase])
    tracks: dict[int, Track] = {}
    end = _end(limit, num_frames)
    _collect(engine.propagate(session_id, 0, "forward", end), tracks)
    next_frame = None if end >= num_frames else end
    for track in tracks.values():
        track.session_id, track.next_frame = session_id, next_frame
    if next_frame is None or not tracks:
        store.release(engine, session_id)
    return tracks


def refine_track(engine: VideoEngine, store: MaskletStore, video: Any, track: Track, frame_index: int,
                 points: Sequence[Sequence[float]], labels: Sequence[int], limit: int | None,
                 num_frames: int) -> Track:
    """Track ``track``'s object again from clicks on one frame; returns the new track.

    In a new session (tracker only, no phrase) the object is prompted on ``frame_index`` with its box
    there (when it is on that frame) and the clicks, then tracked both ways over at least ``[0, limit)``.
    """
    session_id = store.open_session(engine, video)
    here = track.frames.get(frame_index)
    if here is not None:
        object_id = engine.add_box(session_id, frame_index, list(here.box)).object_id
        update = engine.add_points(session_id, frame_index, points, labels, object_id=object_id)
    else:
        update = engine.add_points(session_id, frame_index, points, labels)
    object_id = update.object_id
    span = max(_end(limit, num_frames) - frame_index, frame_index + 1)
    found: dict[int, Track] = {}
    _collect([update.frame], found, only={object_id})
    _collect(engine.propagate(session_id, frame_index, "both", span), found, only={object_id})
    refined = found.get(object_id) or Track(track.phrase, track.score, object_id=object_id)
    refined.phrase, refined.score, refined.session_id = track.phrase, track.score, session_id
    reach = min(frame_index + span, num_frames)
    refined.next_frame = None if reach >= num_frames else reach
    if refined.next_frame is None:
        store.release(engine, session_id)
    return refined


def complete_tracks(engine: VideoEngine, store: MaskletStore, ids: Iterable[int]) -> None:
    """Track the masklets ``ids`` on to the end of the video where they stop short (one pass per session)."""
    by_session: dict[str, list[Track]] = {}
    for track in store.tracks(ids).values():
        if track.next_frame is not None and track.session_id is not None:
            by_session.setdefault(track.session_id, []).append(track)
    for session_id, members in by_session.items():
        start = min(t.next_frame for t in members if t.next_frame is not None)
        extended: dict[int, Track] = {t.object_id: t for t in members}
        _collect(engine.propagate(session_id, start, "forward"), extended, only=set(extended))
        for track in members:
            track.next_frame = None
        logger.info("tracked masklets of session %s from frame %d to the end of the video", session_id, start)


# ----------------------------------------------------------------------------------- duplicates


def track_iou(first: Track, second: Track, num_frames: int) -> float:
    """Spatio-temporal IoU: summed intersections over summed unions, on the frames both tracks cover."""
    end = min(first.covered_until(num_frames), second.covered_until(num_frames))
    inter = union = 0
    for frame in set(first.frames) | set(second.frames):
        a, b = first.frames.get(frame), second.frames.get(frame)
        if frame >= end:
            continue
        if a is not None and b is not None:
            shared = int(mask_utils.area(mask_utils.merge([a.rle, b.rle], intersect=True)))
            inter += shared
            union += a.area + b.area - shared
        else:
            union += (a or b).area  # type: ignore[union-attr]
    return inter / union if union else 0.0


def duplicate_of(track: Track, existing: dict[int, Track], threshold: float, num_frames: int) -> int | None:
    """The id of the existing masklet ``track`` duplicates (IoU above ``threshold``, the best), or None."""
    best_id, best = None, threshold
    for masklet_id, other in existing.items():
        iou = track_iou(track, other, num_frames)
        if iou > best:
            best_id, best = masklet_id, iou
    return best_id
