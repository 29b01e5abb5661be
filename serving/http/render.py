"""Masks and overlays as the API returns them: RLE, base64 PNG, polygons, overlay PNGs."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from sam3_core.drawing import render_final, render_masks
from sam3_core.postprocess import mask_to_polygons, masks_to_rle

#: Overlays are downscaled to this longest side (they are for people, not for measuring).
OVERLAY_MAX_SIDE = 1280


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def mask_png(mask: np.ndarray) -> bytes:
    """An ``(H, W)`` bool mask as a single-channel PNG (255 inside, 0 outside)."""
    return png_bytes(Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, mode="L"))


def _shrunk(image: Image.Image, max_side: int = OVERLAY_MAX_SIDE) -> Image.Image:
    scale = max_side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def candidates_overlay_png(pixels: np.ndarray, masks: np.ndarray, ids: Sequence[int]) -> str:
    """Base64 PNG of the set-of-mark overlay (every mask numbered by id), as the agent sees it."""
    return b64(png_bytes(_shrunk(render_masks(pixels, masks, list(ids)))))


def final_overlay_png(pixels: np.ndarray, masks: np.ndarray, ids: Sequence[int] | None = None) -> str:
    """Base64 PNG of the answer overlay (the chosen masks tinted; labelled when ``ids`` are given)."""
    return b64(png_bytes(_shrunk(render_final(pixels, masks, list(ids) if ids is not None else None))))


def mask_out(mask: np.ndarray, score: float, box: Sequence[float], formats: Sequence[str],
             tolerance: float = 0.0, rle: dict[str, Any] | None = None) -> dict[str, Any]:
    """A :class:`~serving.http.schemas.MaskOut` document for one mask."""
    out: dict[str, Any] = {"score": round(float(score), 6), "box_xyxy": [round(float(v), 2) for v in box],
                           "area": int(np.count_nonzero(mask))}
    if "rle" in formats:
        out["rle"] = rle if rle is not None else masks_to_rle(np.asarray(mask, dtype=bool)[None])[0]
    if "png" in formats:
        out["png_base64"] = b64(mask_png(mask))
    if "polygons" in formats:
        out["polygons"] = mask_to_polygons(np.asarray(mask, dtype=bool), tolerance=tolerance)
    return out
