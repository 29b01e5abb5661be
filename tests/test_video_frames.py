"""Lazy frame sources: mp4/webm files (PyAV), folders of frames, arrays; and their errors."""

from __future__ import annotations

import numpy as np
import pytest
from video_fixtures import HEIGHT, WIDTH, moving_shapes, write_frame_folder, write_mp4, write_webm

from sam3_core.errors import InputError, VideoError
from sam3_core.video.frames import ArrayFrames, FolderFrames, VideoFileFrames, open_video
from sam3_core.video.pixels import PixelFrames

NUM_FRAMES = 30


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return moving_shapes(NUM_FRAMES)


@pytest.fixture(scope="module")
def videos(tmp_path_factory, frames) -> dict:
    folder = tmp_path_factory.mktemp("videos")
    return {
        "mp4": write_mp4(frames, folder / "shapes.mp4", gop=8),
        "webm": write_webm(frames, folder / "shapes.webm"),
        "folder": write_frame_folder(frames, folder / "frames"),
    }


@pytest.mark.parametrize("kind", ["mp4", "webm", "folder"])
def test_sources_decode_every_frame_in_any_order(videos, frames, kind):
    source = open_video(videos[kind], cache_frames=3)
    assert (source.num_frames, source.height, source.width) == (NUM_FRAMES, HEIGHT, WIDTH)
    forward = [source.frame(i).copy() for i in range(NUM_FRAMES)]
    backward = [source.frame(i).copy() for i in reversed(range(NUM_FRAMES))][::-1]
    jumps = {i: source.frame(i).copy() for i in (25, 3, 17, 29, 0, 9)}
    assert all(np.array_equal(a, b) for a, b in zip(forward, backward))
    assert all(np.array_equal(forward[i], frame) for i, frame in jumps.items())
    assert all(f.dtype == np.uint8 and f.shape == (HEIGHT, WIDTH, 3) for f in forward)
    # lossy codecs: close to the source on average (the background is noise, hard to compress)
    error = np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(forward, frames)])
    assert error < (1e-9 if kind == "folder" else 16)
    assert len(source.file_names()) == NUM_FRAMES
    source.close()


def test_folder_orders_numbers_numerically(videos):
    names = FolderFrames(videos["folder"]).file_names()
    assert names[:3] == ["0.png", "1.png", "2.png"] and names[10] == "10.png"


def test_file_source_keeps_only_a_few_decoded_frames(videos):
    source = VideoFileFrames(videos["mp4"], cache_frames=4)
    for index in range(NUM_FRAMES):
        source.frame(index)
    assert len(source._cache._frames) <= 4
    source.close()


def test_array_source_and_pixels(frames):
    source = open_video(frames)
    assert isinstance(source, ArrayFrames) and source.num_frames == NUM_FRAMES

    class Processor:  # stands in for the checkpoint's video processor: resize to 16 x 16
        def __call__(self, videos, return_tensors, device):
            import torch

            clip = torch.as_tensor(videos[0]).permute(0, 3, 1, 2).float()
            return {"pixel_values_videos": torch.nn.functional.interpolate(clip, size=(16, 16))[None]}

    import torch

    pixels = PixelFrames(source, Processor(), torch.device("cpu"), torch.float32, cache_size=2)
    assert len(pixels) == NUM_FRAMES and 3 in pixels and NUM_FRAMES not in pixels
    assert pixels[3].shape == (3, 16, 16)
    for index in range(5):
        pixels[index]
    assert len(pixels._cache) == 2
    with pytest.raises(VideoError, match="out of range"):
        pixels[NUM_FRAMES]


def test_unreadable_missing_and_empty_videos(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 50)
    with pytest.raises(VideoError, match="cannot open"):
        open_video(garbage)
    with pytest.raises(VideoError, match="does not exist"):
        open_video(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="no image frames"):
        open_video(tmp_path / "empty")
    with pytest.raises(VideoError, match="no frames"):
        open_video(np.zeros((0, 8, 8, 3), np.uint8))
    assert issubclass(VideoError, InputError)


def test_zero_frame_video_file(tmp_path):
    import av

    path = tmp_path / "empty.mp4"
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=10)
    stream.width = stream.height = 64
    stream.pix_fmt = "yuv420p"
    container.start_encoding()
    container.close()
    with pytest.raises(VideoError, match=r"no frames|no video stream"):
        open_video(path)


def test_frame_index_out_of_range(videos):
    source = open_video(videos["mp4"])
    for bad in (-1, NUM_FRAMES, 10**6):
        with pytest.raises(VideoError, match=r"out of range .*0\.\.29"):
            source.frame(bad)
    with pytest.raises(VideoError, match="integer"):
        source.frame(1.5)
    source.close()


def test_unreadable_frame_in_folder(tmp_path, frames):
    folder = write_frame_folder(frames[:3], tmp_path / "frames")
    (folder / "1.png").write_bytes(b"broken")
    source = open_video(folder)
    with pytest.raises(VideoError, match=r"cannot read frame 1 \(1.png\)"):
        source.frame(1)
