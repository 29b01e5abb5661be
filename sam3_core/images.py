"""Turning whatever a caller hands us into one RGB uint8 array, with a content key.

Every entry point of the engine accepts an image as a path, raw bytes, a ``PIL.Image`` or a numpy
array. They all end up here, so that the same picture reached by different routes gets the same
pixels and the same cache key.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, ImageTooLarge

ImageInput = str | os.PathLike | bytes | bytearray | Image.Image | np.ndarray

#: Default upper bound on width * height: 25 MP (5000 x 5000). Decoding and preprocessing were measured
#: at about 19 bytes of peak memory per pixel (``python -m bench.engine_memory``; see
#: :data:`sam3_core.admission.BYTES_PER_PIXEL`), so the largest image admitted costs ~0.5 GB before any
#: mask exists, and each full-size mask with every output format ~5.5 B/px more. The former 64 MP let a
#: 62 KB PNG cost 1.2 GB just to decode and 3.9 GB with its masks. SAM 3 sees every image at 1008 px,
#: so larger photos gain nothing but mask resolution: downscale them, or raise ``max_pixels``.
DEFAULT_MAX_PIXELS = 25_000_000


@dataclass(frozen=True)
class LoadedImage:
    """An image ready for the model.

    Attributes:
        pixels: ``(H, W, 3)`` uint8 RGB array, EXIF orientation already applied.
        key: hex digest of the pixels and shape; equal pictures give equal keys whatever their source.
    """

    pixels: np.ndarray
    key: str

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def size_hw(self) -> tuple[int, int]:
        return self.height, self.width


def load_image(source: ImageInput | LoadedImage, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode ``source`` into a :class:`LoadedImage`.

    Args:
        source: a file path, encoded bytes (JPEG, PNG, ...), a ``PIL.Image`` or a numpy array of shape
            ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (uint8, uint16, bool or float in
            [0, 1]). A :class:`LoadedImage` is returned unchanged.
        max_pixels: images with more than this many pixels are refused.

    Raises:
        ImageError: the source cannot be read, is empty, or is too large.
    """
    if isinstance(source, LoadedImage):
        return source
    if isinstance(source, np.ndarray):
        pixels = _array_to_rgb(source, max_pixels)
    elif isinstance(source, Image.Image):
        pixels = _pil_to_rgb(source, max_pixels, what="the PIL image")
    elif isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError("image bytes are empty")
        pixels = _decode(io.BytesIO(bytes(source)), max_pixels, what="the image bytes")
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"image file not found: {path}")
        with path.open("rb") as handle:
            pixels = _decode(handle, max_pixels, what=str(path))
    else:
        raise ImageError(
            f"unsupported image type {type(source).__name__}: pass a path, bytes, PIL.Image or numpy array"
        )
    return LoadedImage(pixels=pixels, key=content_key(pixels))


def content_key(pixels: np.ndarray) -> str:
    """A stable digest of an ``(H, W, 3)`` uint8 array (shape included, so a reshape never collides)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).data)
    return digest.hexdigest()


def _check_size(width: int, height: int, max_pixels: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{what} has zero size ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{what} is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}; "
            "downscale it or raise max_pixels", limit="max_pixels", value=width * height, maximum=max_pixels)


def _decode(stream: io.IOBase, max_pixels: int, what: str) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # Our own pixel limit replaces PIL's decompression-bomb heuristics.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream)
            # The header gives the size before any pixel is decoded: refuse huge images cheaply.
            _check_size(image.width, image.height, max_pixels, what)
            image.load()
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot decode {what}: {exc}") from exc
    return _pil_to_rgb(image, max_pixels, what)


def _pil_to_rgb(image: Image.Image, max_pixels: int, what: str) -> np.ndarray:
    _check_size(image.width, image.height, max_pixels, what)
    try:
        # Transposing copies the whole image: only do it when the orientation tag asks for it.
        if image.getexif().get(ExifTags.Base.Orientation, 1) not in (1, None):
            image = ImageOps.exif_transpose(image)
    except Exception as exc:  # a broken EXIF block must not lose an otherwise good image
        raise ImageError(f"cannot apply the EXIF orientation of {what}: {exc}") from exc
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _array_to_rgb(np.asarray(image), max_pixels)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels keep their colour; alpha is dropped rather than composited, as SAM 3's
        # own preprocessing does, so that the masks line up with what the user sees in most viewers.
        image = image.convert("RGBA")
    if image.mode != "RGB":  # convert() copies even an RGB image; each copy is 4 bytes a pixel
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8).copy()


def _array_to_rgb(array: np.ndarray, max_pixels: int) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {array.shape}")
    _check_size(array.shape[1], array.shape[0], max_pixels, "the image array")
    array = _to_uint8(array)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageError("image array contains NaN or infinite values")
        scale = 255.0 if array.max(initial=0.0) <= 1.0 else 1.0
        return np.clip(np.rint(array * scale), 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        # 32-bit PIL "I" images: anything above 255 is treated as 16-bit data.
        if array.max(initial=0) > 255:
            return (np.clip(array, 0, 65535) >> 8).astype(np.uint8)
        return np.clip(array, 0, 255).astype(np.uint8)
    raise ImageError(f"unsupported image array dtype {array.dtype}")
