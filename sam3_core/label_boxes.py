"""Mask id labels: the id in a rounded box of the mask's colour, near the mask's label anchor, kept inside the image
and away from the labels already drawn where it can be.

Text is white or black, whichever contrasts more with the box (:func:`~sam3_core.palette.text_color_for`); the
font is Pillow's bundled one, sized with the image (:func:`default_font_size`). Anchors come from
:mod:`sam3_core.anchors`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sam3_core.anchors import Anchor, label_anchors
from sam3_core.errors import UsageError
from sam3_core.palette import RGB, color_for_id, text_color_for

logger = logging.getLogger(__name__)


def default_font_size(height: int, width: int) -> int:
    """Label text size in pixels for an ``H x W`` image: 4% of its shorter side, within ``[10, 72]``."""
    return int(np.clip(round(min(height, width) * 0.04), 10, 72))


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` px; the fixed-size bitmap font if FreeType is unavailable."""
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):  # Pillow without FreeType, or Pillow < 10.1
        logger.debug("scalable default font unavailable; using the bitmap font")
        return ImageFont.load_default()


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The font labels are drawn in, at ``size`` px (Pillow's bundled font; cached)."""
    return _font(size)


def _overlaps(box: tuple[int, int, int, int], others: list[tuple[int, int, int, int]]) -> bool:
    return any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3] for o in others)


def _place_box(
    anchor: Anchor, size: tuple[int, int], bounds: tuple[int, int], taken: list
) -> tuple[int, int, int, int]:
    """A ``size`` box near ``anchor``, inside ``bounds`` (W, H), avoiding ``taken`` boxes when it can."""
    bw, bh = size
    candidates = [(0, 0), (0, -bh), (0, bh), (-bw, 0), (bw, 0)]
    boxes = []
    for dx, dy in candidates:
        left = min(max(anchor[0] + dx - bw // 2, 0), max(0, bounds[0] - bw))
        top = min(max(anchor[1] + dy - bh // 2, 0), max(0, bounds[1] - bh))
        boxes.append((int(left), int(top), int(left) + bw, int(top) + bh))
    return next((b for b in boxes if not _overlaps(b, taken)), boxes[0])


def _draw_label(
    image: Image.Image, text: str, anchor: Anchor, color: RGB, font_size: int, taken: list
) -> tuple[int, int, int, int]:
    """Draw ``text`` on ``image`` in a rounded box of ``color`` near ``anchor``; return the box used."""
    draw = ImageDraw.Draw(image)
    font = _font(font_size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(2, font_size // 5)
    height = bottom - top + 2 * pad
    size = (max(height, right - left + 2 * pad), height)  # never narrower than tall
    box = _place_box(anchor, size, image.size, taken)
    ink = text_color_for(color)
    border = max(1, font_size // 16)
    corners = (box[0], box[1], box[2] - 1, box[3] - 1)  # Pillow's rectangle end points are inclusive
    draw.rounded_rectangle(corners, radius=max(2, size[1] // 4), fill=color, outline=ink, width=border)
    draw.text((box[0] + (size[0] - right - left) // 2, box[1] + pad - top), text, fill=ink, font=font)
    return box


def draw_labels(
    result: Image.Image, anchors: Sequence[Anchor | None], ids: list[int], order: np.ndarray, font_size: int
) -> None:
    """Label each mask (in ``order``) with its id at its anchor; masks without an anchor (empty) are skipped."""
    taken: list[tuple[int, int, int, int]] = []
    for index in order:
        anchor = anchors[index]
        if anchor is None:
            logger.debug("mask id %s is empty; not labelled", ids[index])
            continue
        color = color_for_id(ids[index])
        taken.append(_draw_label(result, str(ids[index]), anchor, color, font_size, taken))


def checked_anchors(anchors: Sequence[Anchor | None] | None, stack: np.ndarray) -> list[Anchor | None]:
    """``anchors`` given by the caller (one per mask), or :func:`label_anchor` of each mask."""
    if anchors is None:
        return label_anchors(stack)
    if len(anchors) != len(stack):
        raise UsageError(f"got {len(stack)} masks but {len(anchors)} label anchors")
    return list(anchors)
