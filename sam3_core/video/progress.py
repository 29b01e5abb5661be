"""Progress of a propagation: frames done, frames per second and objects on the latest frame.

:func:`with_progress` wraps a stream of :class:`~sam3_core.video.results.FrameResult` and reports a
:class:`PropagationProgress` to a callback; :class:`ReportingEngine` wraps a
:class:`~sam3_core.video.engine.VideoEngine` so that every ``propagate`` reports (for code that only
sees an engine, such as the video agent's tools).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from .results import FrameResult


@dataclass(frozen=True)
class PropagationProgress:
    """Where a propagation stands.

    Attributes:
        frames_done: frames yielded so far. total: frames it will visit (None when unknown).
        objects: objects on the latest frame. fps: frames per second since the first frame.
        elapsed_s: seconds since the propagation started. done: the stream has ended.
    """

    frames_done: int
    total: int | None
    objects: int
    fps: float
    elapsed_s: float
    done: bool = False

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["fps"], doc["elapsed_s"] = round(self.fps, 3), round(self.elapsed_s, 3)
        return doc


ProgressCallback = Callable[[PropagationProgress], None]


def with_progress(results: Iterable[FrameResult], callback: ProgressCallback, *, total: int | None = None,
                  every_s: float = 0.5, clock: Callable[[], float] = time.monotonic) -> Iterator[FrameResult]:
    """Yield ``results``, calling ``callback`` after the first frame, then at most every ``every_s`` seconds,
    and once more (``done=True``) when the stream ends."""
    start = clock()
    last = None
    frames = objects = 0
    for frames, result in enumerate(results, start=1):
        objects = len(result)
        now = clock()
        if last is None or now - last >= every_s:
            last = now
            callback(_progress(frames, total, objects, now - start))
        yield result
    callback(_progress(frames, total, objects, clock() - start, done=True))


def _progress(frames: int, total: int | None, objects: int, elapsed: float, done: bool = False) -> PropagationProgress:
    return PropagationProgress(frames, total, objects, frames / elapsed if elapsed > 0 else 0.0, elapsed, done)


def frames_to_visit(num_frames: int, start: int, direction: str, max_frames: int | None) -> int:
    """How many frames ``VideoEngine.propagate(start_frame=start, direction, max_frames)`` yields."""
    forward = num_frames - start if direction in ("forward", "both") else 0
    backward = start + 1 if direction == "backward" else (start if direction == "both" else 0)
    if max_frames is not None:
        forward, backward = min(forward, max_frames), min(backward, max_frames)
    return forward + backward


class ReportingEngine:
    """A video engine whose every ``propagate`` reports progress to ``callback``; all else is the engine's.

    ``callback`` receives the :class:`PropagationProgress` and the session id.
    """

    def __init__(self, engine, callback: Callable[[PropagationProgress, str], None], every_s: float = 0.5) -> None:
        self._engine, self._callback, self._every_s = engine, callback, every_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def propagate(self, session_id: str, start_frame: int | None = None, direction: str = "forward",
                  max_frames: int | None = None) -> Iterator[FrameResult]:
        stream = self._engine.propagate(session_id, start_frame, direction, max_frames)
        num_frames = self._engine.session_info(session_id).num_frames
        total = frames_to_visit(num_frames, start_frame or 0, direction, max_frames)
        return with_progress(stream, lambda p: self._callback(p, session_id), total=total, every_s=self._every_s)
