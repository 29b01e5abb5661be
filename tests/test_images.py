"""Image loading: every supported source gives the same RGB pixels and key; bad input is named."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sam3_core.errors import ImageError
from sam3_core.images import load_image


def _png_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


def test_sources_agree(tmp_path):
    pixels = np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3)
    path = tmp_path / "x.png"
    Image.fromarray(pixels).save(path)
    loaded = [load_image(s) for s in (pixels, Image.fromarray(pixels), path, str(path), path.read_bytes())]
    for item in loaded:
        assert item.pixels.dtype == np.uint8 and item.pixels.shape == (6, 5, 3)
        assert np.array_equal(item.pixels, pixels)
    assert len({item.key for item in loaded}) == 1
    assert load_image(pixels[:, :4]).key != loaded[0].key


def test_exif_orientation_is_applied():
    pixels = np.zeros((4, 8, 3), np.uint8)
    pixels[:, :2] = 255  # white band on the left
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif, quality=100)
    loaded = load_image(buffer.getvalue())
    assert loaded.pixels.shape == (8, 4, 3)
    assert loaded.pixels[:2].mean() > 200 and loaded.pixels[-2:].mean() < 50  # band now on top


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1", "CMYK", "I;16", "I", "F"])
def test_modes_become_rgb(mode):
    gray = np.linspace(0, 1, 12 * 10).reshape(12, 10)
    if mode in ("I;16", "I"):
        image = Image.fromarray((gray * 65535).astype(np.uint16 if mode == "I;16" else np.int32))
        assert image.mode == mode
    elif mode == "F":
        image = Image.fromarray(gray.astype(np.float32), mode="F")
    else:
        image = Image.fromarray((gray * 255).astype(np.uint8)).convert(mode)
    loaded = load_image(_png_bytes(image) if mode not in ("CMYK", "F", "I") else image)
    assert loaded.pixels.shape == (12, 10, 3) and loaded.pixels.dtype == np.uint8
    if mode in ("L", "I;16", "I", "F"):
        assert loaded.pixels[0, 0, 0] < 10 and loaded.pixels[-1, -1, 0] > 240  # dynamic range kept


@pytest.mark.parametrize("array", [np.zeros((5, 5), np.uint16) + 65535, np.ones((5, 5, 1), bool),
                                   np.full((5, 5, 4), 0.5, np.float32), np.zeros((5, 5, 3), np.int64)])
def test_arrays_of_other_dtypes(array):
    assert load_image(array).pixels.shape == (5, 5, 3)


@pytest.mark.parametrize("source, match", [
    (b"", "empty"), (b"nope", "cannot decode"), (np.zeros((0, 4, 3), np.uint8), "zero size"),
    (np.zeros((4, 4, 2), np.uint8), "must be"), (np.full((2, 2, 3), np.nan), "NaN"), (3.5, "unsupported"),
    ("/no/such/file.jpg", "not found"),
])
def test_bad_sources(source, match):
    with pytest.raises(ImageError, match=match):
        load_image(source)


def test_truncated_file_and_pixel_limit(tmp_path):
    data = _png_bytes(Image.new("RGB", (64, 64), "red"))
    with pytest.raises(ImageError, match="cannot decode"):
        load_image(data[: len(data) // 2])
    with pytest.raises(ImageError, match="over the limit"):
        load_image(data, max_pixels=64 * 63)
    assert load_image(data, max_pixels=64 * 64).width == 64
