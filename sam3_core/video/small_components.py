"""Small holes and specks of a stack of masks on CPU, labelled inside the stack's bounding box only.

:func:`~sam3_core.video.cleanup.fill_holes_and_remove_sprinkles` needs, per mask, the background components of
at most ``max_area`` pixels (holes) and then the small foreground components of the filled mask (specks).

* All masks of a frame are labelled in one ``scipy.ndimage.label`` call over the ``(N, H, W)`` stack, with a
  3-D structure whose only nonzero plane is the middle one, so components never cross from one mask to the
  next: one C pass instead of a Python round trip per object (16 objects of 32x32 px: 1.0 -> 0.34 ms).
* Only the box around all masks' foreground, grown by one pixel, is labelled (tracked objects usually cover a
  part of the frame), and this stays exact: every foreground pixel is inside the box, so specks are seen
  whole; a background component that never leaves the box is seen whole too; one that reaches the one-pixel
  ring outside the box may continue beyond the crop, so if its part inside is already larger than
  ``max_area`` it is no hole, and otherwise (rare: masks covering nearly the whole frame) the whole stack is
  labelled instead.
* The per-pixel lookups that turn labels into maps run only when some component is small enough to matter.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# 8-connectivity inside each mask of an (N, H, W) stack and none across masks (only the middle plane is set).
_PER_MASK = np.zeros((3, 3, 3), dtype=bool)
_PER_MASK[1] = True
_PER_MASK.setflags(write=False)

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (half-open)


def small_components(foreground: np.ndarray, max_area: int) -> tuple[Box, np.ndarray, np.ndarray] | None:
    """Holes to fill and specks to drop in a stack of masks, as boolean maps over one box of them.

    Args:
        foreground: ``(N, H, W)`` bool. max_area: area threshold in pixels (> 0).

    Returns:
        ``None`` when nothing changes, else ``(box, holes, specks)``: ``holes`` are background pixels of
        components of at most ``max_area`` pixels, ``specks`` foreground pixels (after filling) of components of
        at most ``min(max_area, that mask's filled area // 2)`` pixels; both ``(N, y1 - y0, x1 - x0)`` maps over
        ``box`` (the same box for every mask).
    """
    _, height, width = foreground.shape
    whole = (0, height, 0, width)
    rows = np.flatnonzero(foreground.any(axis=(0, 2)))
    if rows.size == 0:  # every mask empty: each one's background is a single component of H * W pixels
        if height * width > max_area:
            return None
        box = inner = whole
    else:
        cols = np.flatnonzero(foreground.any(axis=(0, 1)))
        inner = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
        box = (max(inner[0] - 1, 0), min(inner[1] + 1, height), max(inner[2] - 1, 0), min(inner[3] + 1, width))
    result = _label_box(foreground, box, inner, max_area)
    if result is None:  # a small background piece may go on beyond the box: label the whole masks
        box = whole
        result = _label_box(foreground, box, box, max_area)
    holes, specks = result
    return (box, holes, specks) if holes.any() or specks.any() else None


def _label_box(foreground: np.ndarray, box: Box, inner: Box, max_area: int):
    """``(holes, specks)`` over ``box``, or ``None`` when a small background part touches outside ``inner``."""
    y0, y1, x0, x1 = box
    crop = foreground[:, y0:y1, x0:x1]
    labels, count = ndimage.label(~crop, structure=_PER_MASK)
    small = np.bincount(labels.ravel(), minlength=count + 1) <= max_area
    small[0] = False
    if inner != box:
        ring = np.ones(crop.shape[1:], dtype=bool)
        ring[inner[0] - y0:inner[1] - y0, inner[2] - x0:inner[3] - x0] = False
        reaching = np.unique(labels[:, ring])
        if small[reaching].any():
            return None
        small[reaching] = False
    holes = small[labels] if small.any() else np.zeros_like(crop)
    filled = crop | holes
    labels, count = ndimage.label(filled, structure=_PER_MASK)
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    areas[0] = max_area + 1  # background
    if not (areas <= max_area).any():
        return holes, np.zeros_like(crop)
    limit = np.minimum(max_area, filled.sum(axis=(1, 2)) // 2)  # per mask: a tiny object is never erased whole
    return holes, areas[labels] <= limit[:, None, None]
