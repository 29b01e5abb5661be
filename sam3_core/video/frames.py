"""Video frames decoded on demand: an mp4/webm file (PyAV), a folder of images, or an in-memory array.

Every source gives RGB ``uint8`` frames of shape ``(H, W, 3)`` by index and keeps at most
``cache_frames`` decoded frames, so a long video never sits in memory whole. Files are indexed once
when opened by demuxing their packets (no decoding), which gives the frame count and each frame's
timestamp for seeking.

Random access in a compressed file costs a seek to the previous keyframe plus decoding up to the
frame; when seeking, the frames just before the target are kept, so walking a video backwards
decodes each group of pictures about ``gop / cache_frames`` times instead of once per frame.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import VideoError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
DEFAULT_CACHE_FRAMES = 8
# Decode forward instead of seeking when the wanted frame is at most this many frames ahead.
_MAX_SKIP_AHEAD = 32


class FrameSource(Protocol):
    """What the video engine needs from a video: its size and its frames by index."""

    name: str
    num_frames: int
    height: int
    width: int
    fps: float

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as ``(H, W, 3)`` ``uint8`` RGB; :class:`VideoError` when out of range."""
        ...

    def file_names(self) -> list[str]:
        """One name per frame (YouTube-VIS ``file_names``)."""
        ...

    def close(self) -> None: ...


class _FrameLRU:
    """A small least-recently-used map of decoded frames."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._frames: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, index: int) -> np.ndarray | None:
        frame = self._frames.get(index)
        if frame is not None:
            self._frames.move_to_end(index)
        return frame

    def put(self, index: int, frame: np.ndarray) -> None:
        self._frames[index] = frame
        self._frames.move_to_end(index)
        while len(self._frames) > self.capacity:
            self._frames.popitem(last=False)

    def clear(self) -> None:
        self._frames.clear()


def check_index(index: int, num_frames: int, name: str) -> int:
    """``index`` as an int in ``[0, num_frames)``, else a :class:`VideoError` naming the valid range."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise VideoError(f"frame index must be an integer, got {type(index).__name__}")
    if not 0 <= int(index) < num_frames:
        raise VideoError(f"frame index {index} is out of range for {name} ({num_frames} frames: 0..{num_frames - 1})")
    return int(index)


class ArrayFrames:
    """Frames already in memory: a ``(T, H, W, 3)`` ``uint8`` array or a list of ``(H, W, 3)`` arrays."""

    def __init__(self, frames: np.ndarray | Sequence[np.ndarray], name: str = "<array>", fps: float = 25.0) -> None:
        if len(frames) == 0:
            raise VideoError(f"{name} has no frames")
        first = np.asarray(frames[0])
        if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
            raise VideoError(f"frames must be (H, W, 3) uint8 RGB arrays, got {first.shape} {first.dtype}")
        self._frames = frames
        self.name, self.fps = name, float(fps)
        self.num_frames = len(frames)
        self.height, self.width = int(first.shape[0]), int(first.shape[1])

    def frame(self, index: int) -> np.ndarray:
        frame = np.asarray(self._frames[check_index(index, self.num_frames, self.name)])
        if frame.shape != (self.height, self.width, 3):
            raise VideoError(f"frame {index} of {self.name} has shape {frame.shape}, expected "
                             f"{(self.height, self.width, 3)}")
        return frame

    def file_names(self) -> list[str]:
        return [f"{i:06d}" for i in range(self.num_frames)]

    def close(self) -> None:
        return None


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class FolderFrames:
    """A folder of image files, one per frame, ordered by name with numbers compared as numbers."""

    def __init__(self, folder: str | Path, cache_frames: int = DEFAULT_CACHE_FRAMES) -> None:
        self.folder = Path(folder)
        self.name = str(folder)
        self._paths = sorted((p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                             key=_natural_key)
        if not self._paths:
            raise VideoError(f"{folder} holds no image frames (looked for {sorted(IMAGE_SUFFIXES)})")
        self.num_frames = len(self._paths)
        self.fps = 25.0
        self._cache = _FrameLRU(cache_frames)
        first = self._read(0)
        self.height, self.width = int(first.shape[0]), int(first.shape[1])

    def _read(self, index: int) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        path = self._paths[index]
        try:
            with Image.open(path) as image:
                frame = np.asarray(image.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise VideoError(f"cannot read frame {index} ({path.name}) of {self.folder}: {exc}") from exc
        if index and frame.shape[:2] != (self.height, self.width):
            raise VideoError(f"frame {path.name} is {frame.shape[1]}x{frame.shape[0]} but the first frame of "
                             f"{self.folder} is {self.width}x{self.height}; every frame must have the same size")
        self._cache.put(index, frame)
        return frame

    def frame(self, index: int) -> np.ndarray:
        index = check_index(index, self.num_frames, self.name)
        cached = self._cache.get(index)
        return cached if cached is not None else self._read(index)

    def file_names(self) -> list[str]:
        return [p.name for p in self._paths]

    def close(self) -> None:
        self._cache.clear()


class VideoFileFrames:
    """An mp4/webm/mkv/... file read with PyAV, frames decoded lazily.

    Raises:
        VideoError: the file is missing, not a video FFmpeg can read, has no video stream or no frames.
    """

    def __init__(self, path: str | Path, cache_frames: int = DEFAULT_CACHE_FRAMES) -> None:
        import av

        self.path = Path(path)
        self.name = str(path)
        if not self.path.is_file():
            raise VideoError(f"video file {path} does not exist")
        try:
            self._container = av.open(str(self.path))
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise VideoError(f"cannot open {path} as a video: {exc}") from exc
        try:
            self._index_stream()
            self._cache = _FrameLRU(cache_frames)
            self._decoder: Iterator | None = None
            self._next_index = 0
            first = self.frame(0)
        except BaseException:
            self._container.close()
            raise
        self.height, self.width = int(first.shape[0]), int(first.shape[1])

    def _index_stream(self) -> None:
        import av

        if not self._container.streams.video:
            raise VideoError(f"{self.name} has no video stream (no frames to read)")
        self._stream = self._container.streams.video[0]
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else 25.0
        try:
            stamps = [p.pts for p in self._container.demux(self._stream) if p.size > 0]
        except av.FFmpegError as exc:
            raise VideoError(f"cannot read the packets of {self.name}: {exc}") from exc
        if not stamps:
            raise VideoError(f"{self.name} has no frames")
        if any(s is None for s in stamps):
            raise VideoError(f"{self.name} has frames without timestamps; re-encode it (e.g. to mp4) first")
        self._pts = sorted(stamps)
        self._index_of = {pts: i for i, pts in enumerate(self._pts)}
        self.num_frames = len(self._pts)

    def frame(self, index: int) -> np.ndarray:
        index = check_index(index, self.num_frames, self.name)
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        ahead = index - self._next_index
        if self._decoder is None or not 0 <= ahead <= _MAX_SKIP_AHEAD:
            self._seek(index)
        return self._decode_until(index)

    def _seek(self, index: int) -> None:
        import av

        try:
            self._container.seek(self._pts[index], stream=self._stream, backward=True, any_frame=False)
        except av.FFmpegError as exc:
            raise VideoError(f"cannot seek to frame {index} of {self.name}: {exc}") from exc
        self._decoder = self._container.decode(self._stream)
        self._next_index = -1  # unknown until the first decoded frame

    def _decode_until(self, index: int) -> np.ndarray:
        import av

        keep_from = index - self._cache.capacity + 1
        try:
            for decoded in self._decoder:
                position = self._index_of.get(decoded.pts)
                if position is None:
                    continue
                self._next_index = position + 1
                if position >= keep_from:
                    frame = decoded.to_ndarray(format="rgb24")
                    self._cache.put(position, frame)
                    if position == index:
                        return frame
                if position > index:
                    break
        except av.FFmpegError as exc:
            self._decoder = None
            raise VideoError(f"cannot decode frame {index} of {self.name}: {exc}") from exc
        self._decoder = None
        raise VideoError(f"frame {index} of {self.name} could not be decoded (the file may be truncated)")

    def file_names(self) -> list[str]:
        return [f"{self.path.stem}/{i:06d}" for i in range(self.num_frames)]

    def close(self) -> None:
        self._cache.clear()
        self._decoder = None
        self._container.close()


def open_video(video: str | Path | np.ndarray | Sequence[np.ndarray] | FrameSource,
               cache_frames: int = DEFAULT_CACHE_FRAMES) -> FrameSource:
    """A :class:`FrameSource` for a video file, a folder of frames, an array of frames, or a source as is.

    Raises:
        VideoError: the path does not exist, cannot be read as a video, or has no frames.
    """
    if isinstance(video, (str, Path)):
        path = Path(video)
        if path.is_dir():
            return FolderFrames(path, cache_frames)
        return VideoFileFrames(path, cache_frames)
    if isinstance(video, np.ndarray) or (isinstance(video, Sequence) and not isinstance(video, str)):
        return ArrayFrames(video)
    if all(hasattr(video, name) for name in ("frame", "num_frames", "height", "width")):
        return video
    raise VideoError(f"cannot read a video from a {type(video).__name__}; pass a file, a folder of frames or an array")
