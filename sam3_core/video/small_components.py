"""Small holes and specks of masks on CPU, labelled inside each mask's bounding box only.

:func:`~sam3_core.video.cleanup.fill_holes_and_remove_sprinkles` needs, per mask, the background components of
at most ``max_area`` pixels (holes) and then the small foreground components of the filled mask (specks).
Labelling whole masks costs ``O(H * W)`` per mask, which adds up in the tracker's memory encoding (a 288x288
mask per object per frame on the benchmark's mid-size model). Tracked objects usually cover a small part of the
frame, so this labels only the object's bounding box grown by one pixel, and stays exact:

* every foreground pixel is inside the box, so foreground components (specks) are all seen whole;
* a background component that never leaves the box is seen whole too;
* a background component that reaches the one-pixel ring outside the box may continue beyond the crop; if its
  part inside the crop is already larger than ``max_area`` it is no hole, and otherwise (rare: the object covers
  nearly the whole frame) the mask is labelled whole instead.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# 8-connectivity in 2-D.
_EIGHT = np.ones((3, 3), dtype=bool)
_EIGHT.setflags(write=False)

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (half-open)


def small_components(foreground: np.ndarray, max_area: int) -> tuple[Box, np.ndarray, np.ndarray] | None:
    """Holes to fill and specks to drop in one mask, as boolean maps over a box of it.

    Args:
        foreground: ``(H, W)`` bool. max_area: area threshold in pixels (> 0).

    Returns:
        ``None`` when nothing changes, else ``(box, holes, specks)``: ``holes`` are background pixels of
        components of at most ``max_area`` pixels, ``specks`` foreground pixels (after filling) of components of
        at most ``min(max_area, filled area // 2)`` pixels; both are ``(y1 - y0, x1 - x0)`` maps over ``box``.
    """
    height, width = foreground.shape
    rows = np.flatnonzero(foreground.any(axis=1))
    if rows.size == 0 or (rows.size == height and foreground.all()):
        if height * width > max_area:  # one component of the whole mask: neither a hole nor a speck
            return None
        rows = np.arange(height)
    cols = np.flatnonzero(foreground.any(axis=0)) if foreground.any() else np.arange(width)
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    box = (max(top - 1, 0), min(bottom + 1, height), max(left - 1, 0), min(right + 1, width))
    result = _label_box(foreground, box, (top, bottom, left, right), max_area)
    if result is None:  # a small background piece may go on beyond the box: label the whole mask
        box = (0, height, 0, width)
        result = _label_box(foreground, box, box, max_area)
    holes, specks = result
    return (box, holes, specks) if holes.any() or specks.any() else None


def _label_box(foreground: np.ndarray, box: Box, inner: Box, max_area: int):
    """``(holes, specks)`` over ``box``, or ``None`` when a small background part touches outside ``inner``."""
    y0, y1, x0, x1 = box
    crop = foreground[y0:y1, x0:x1]
    labels, count = ndimage.label(~crop, structure=_EIGHT)
    small = np.bincount(labels.ravel(), minlength=count + 1) <= max_area
    small[0] = False
    outside = np.ones(crop.shape, dtype=bool)
    outside[inner[0] - y0:inner[1] - y0, inner[2] - x0:inner[3] - x0] = False
    reaching = np.unique(labels[outside & ~crop])
    if small[reaching].any():
        return None
    small[reaching] = False
    holes = small[labels]
    filled = crop | holes
    labels, count = ndimage.label(filled, structure=_EIGHT)
    limit = min(max_area, int(filled.sum()) // 2)
    specks = np.bincount(labels.ravel(), minlength=count + 1) <= limit
    specks[0] = False
    return holes, specks[labels]
