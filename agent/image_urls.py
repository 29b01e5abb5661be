"""Images as the ``data:`` URLs that OpenAI-compatible chat endpoints accept, within a pixel budget."""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np
from PIL import Image

from sam3_core.errors import ImageError, UsageError

ImageLike = np.ndarray | Image.Image


def image_to_data_url(image: ImageLike, max_pixels: int | None, fmt: str = "jpeg", quality: int = 90) -> str:
    """Encode an image as a base64 ``data:`` URL, downscaled to at most ``max_pixels`` pixels.

    Accepts a PIL image or a uint8 numpy array (HxW, HxWx3 or HxWx4). The aspect ratio is kept;
    images within the budget are not resized. ``fmt`` is ``"jpeg"`` (alpha dropped) or ``"png"``.
    """
    if isinstance(image, np.ndarray):
        shape_ok = image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))
        if image.dtype != np.uint8 or not shape_ok:
            raise ImageError(f"expected a uint8 HxW, HxWx3 or HxWx4 array, got {image.dtype} {image.shape}")
        image = Image.fromarray(image)
    elif not isinstance(image, Image.Image):
        raise UsageError(f"image must be a numpy array or PIL image, got {type(image).__name__}")
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"image is empty ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        scale = math.sqrt(max_pixels / (width * height))
        size = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    if fmt == "jpeg":
        image.convert("RGB").save(buf, format="JPEG", quality=quality)
    elif fmt == "png":
        image.save(buf, format="PNG")
    else:
        raise UsageError(f"fmt must be 'jpeg' or 'png', got {fmt!r}")
    return f"data:image/{fmt};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def image_part(image: ImageLike, max_pixels: int | None, fmt: str = "jpeg") -> dict[str, Any]:
    """An OpenAI ``image_url`` content part for ``image``."""
    return {"type": "image_url", "image_url": {"url": image_to_data_url(image, max_pixels, fmt)}}
