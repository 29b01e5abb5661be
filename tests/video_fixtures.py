"""Short synthetic videos for the video tests: a few coloured shapes moving over a textured background.

``moving_shapes(n)`` gives the frames as a ``(T, H, W, 3)`` ``uint8`` array; ``write_mp4`` /
``write_webm`` / ``write_frame_folder`` store them the ways the engine reads videos.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEIGHT, WIDTH = 96, 128
SHAPES = (  # (colour, radius, start x, start y, velocity x, velocity y)
    ((230, 40, 40), 14, 24.0, 30.0, 1.5, 0.5),
    ((40, 200, 60), 10, 90.0, 60.0, -1.0, -0.4),
    ((40, 80, 230), 8, 60.0, 20.0, 0.3, 1.1),
)


def shape_centres(index: int) -> list[tuple[float, float]]:
    """``(x, y)`` centre of every shape on frame ``index`` (they bounce off the borders)."""
    centres = []
    for _, radius, x0, y0, vx, vy in SHAPES:
        centres.append((_bounce(x0 + vx * index, radius, WIDTH), _bounce(y0 + vy * index, radius, HEIGHT)))
    return centres


def _bounce(position: float, radius: int, size: int) -> float:
    span = size - 2 * radius
    offset = (position - radius) % (2 * span)
    return radius + (offset if offset <= span else 2 * span - offset)


def moving_shapes(num_frames: int, height: int = HEIGHT, width: int = WIDTH, seed: int = 0) -> np.ndarray:
    """``(num_frames, height, width, 3)`` ``uint8`` frames: discs moving over a fixed noisy background."""
    rng = np.random.default_rng(seed)
    background = (rng.integers(90, 140, size=(height, width, 3))).astype(np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for index in range(num_frames):
        frame = background.copy()
        for (colour, radius, *_), (cx, cy) in zip(SHAPES, shape_centres(index)):
            frame[(xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2] = colour
        frames[index] = frame
    return frames


def _write(frames: np.ndarray, path: Path, codec: str, fps: int, options: dict[str, str]) -> Path:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = options
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = 10, gop: int = 12) -> Path:
    """H.264 mp4 (libx264, keyframe every ``gop`` frames so seeking is exercised)."""
    return _write(frames, Path(path), "libx264", fps, {"g": str(gop), "crf": "18", "preset": "ultrafast"})


def write_webm(frames: np.ndarray, path: str | Path, fps: int = 10) -> Path:
    """VP8 webm."""
    return _write(frames, Path(path), "libvpx", fps, {"g": "12"})


def write_frame_folder(frames: np.ndarray, folder: str | Path) -> Path:
    """One PNG per frame, named ``0.png, 1.png, ... 10.png`` (so name order needs numeric sorting)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{index}.png")
    return folder
