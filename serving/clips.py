"""Bounds on a clip the video agent answers about (HTTP, chat and MCP share them), checked before any model work.

A clip is opened once to read its header and packet index (no frame is decoded but the first), then:

* frames over ``max_pixels`` are refused (HTTP 413, ``video_too_large``);
* a clip longer than ``max_seconds`` (frame count / frame rate) is refused (HTTP 413, ``video_too_long``);
* a requested ``max_frames`` over the server's cap is refused (HTTP 422, ``max_frames_over_cap``; the
  message names the field and the cap);
* a clip with more frames than ``max_frames`` is **sampled evenly**: every ``stride``-th frame, with
  ``stride = ceil(frames / max_frames)``, starting at frame 0, so the agent still sees the whole clip (an
  event near the end is not cut off), only at a lower frame rate. The sampled frames are written losslessly
  (PNG) into a folder named by their source frame index (``000040.png``), and the agent runs on that folder.

:class:`ClipPlan` says what was done; its :meth:`ClipPlan.to_json` goes into the answer as ``clip``, with
``frame_indices``: the source frame of each frame of the answer's masklets.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam3_core.errors import InputError

logger = logging.getLogger(__name__)

#: Defaults of the server-side caps (``ServeSettings`` and ``McpOptions`` use them).
DEFAULT_MAX_FRAMES = 300
DEFAULT_MAX_SECONDS = 600.0


class ClipRefused(InputError):
    """A clip or request over one of the bounds; ``status`` is the HTTP status (413 or 422), ``code`` its name."""

    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True)
class ClipLimits:
    """The server's bounds: ``max_frames`` (cap of the request field and its default), ``max_seconds``
    (longest clip), ``max_pixels`` (largest frame, width x height)."""

    max_frames: int = DEFAULT_MAX_FRAMES
    max_seconds: float = DEFAULT_MAX_SECONDS
    max_pixels: int = 1 << 25

    def frames_for(self, requested: int | None) -> int:
        """The frames the agent may see: ``requested`` (None: the cap); ClipRefused (422) above the cap."""
        if requested is None:
            return self.max_frames
        if requested < 1:
            raise ClipRefused(f"max_frames must be >= 1, got {requested}", 422, "bad_max_frames")
        if requested > self.max_frames:
            raise ClipRefused(f"max_frames {requested} is over this server's cap of {self.max_frames} frames; "
                              f"ask for at most {self.max_frames} (longer clips are sampled evenly)",
                              422, "max_frames_over_cap")
        return requested


@dataclass(frozen=True)
class ClipPlan:
    """What the agent runs on: ``video`` (the clip itself, or the folder of sampled frames) and how it was made.

    ``source_frames``, ``fps``, ``width``, ``height``: the clip as uploaded; ``stride``: 1 when every frame is
    kept; ``frame_indices``: the source frame index of each frame the agent sees (length = its frame count).
    """

    video: str
    source_frames: int
    fps: float
    width: int
    height: int
    stride: int
    frame_indices: tuple[int, ...]
    #: The clip's file (or folder) name, without the folders above it.
    name: str = ""

    @property
    def sampled(self) -> bool:
        return self.stride > 1

    def to_json(self) -> dict[str, Any]:
        return {"source_frames": self.source_frames, "fps": round(self.fps, 3), "width": self.width,
                "height": self.height, "stride": self.stride, "frames": len(self.frame_indices),
                "frame_indices": list(self.frame_indices)}


def prepare_clip(path: str | Path, work_folder: Path, max_frames: int, limits: ClipLimits) -> ClipPlan:
    """Check ``path`` against ``limits`` and sample it down to ``max_frames`` frames (blocking: run it in a thread).

    Sampled frames go into ``work_folder / "frames"`` (the caller deletes ``work_folder``).

    Raises:
        VideoError: not a readable video. ClipRefused: over the pixel or duration limit.
    """
    from PIL import Image

    from sam3_core.video import open_video  # here: the CLI reads this module's defaults without the video stack

    source = open_video(str(path))
    try:
        count, fps = source.num_frames, float(source.fps or 0.0) or 25.0
        if source.width * source.height > limits.max_pixels:
            raise ClipRefused(f"video frames are {source.width}x{source.height}, over this server's limit of "
                              f"{limits.max_pixels} pixels", 413, "video_too_large")
        seconds = count / fps
        if seconds > limits.max_seconds:
            raise ClipRefused(f"the clip is {seconds:.1f} s long ({count} frames at {fps:g} fps), over this "
                              f"server's limit of {limits.max_seconds:g} s", 413, "video_too_long")
        stride = max(1, math.ceil(count / max_frames))
        indices = tuple(range(0, count, stride))
        video = str(path)
        if stride > 1:
            folder = work_folder / "frames"
            folder.mkdir(parents=True, exist_ok=True)
            for index in indices:  # in order: the decoder walks forward, each frame is decoded once
                Image.fromarray(source.frame(index)).save(folder / f"{index:06d}.png", compress_level=1)
            video = str(folder)
            logger.info("clip %s: %d frames sampled every %d -> %d frames", path, count, stride, len(indices))
        return ClipPlan(video, count, fps, source.width, source.height, stride, indices, Path(path).name)
    finally:
        source.close()
