"""Where a mask's label goes: a mask pixel as far as possible from the mask's boundary.

A ``mask`` is an ``(H, W)`` boolean array; points are ``(x, y)`` pixel coordinates (column, row).
Everything outside the array counts as background.

:func:`label_anchor` works on a coarse grid (at most :data:`ANCHOR_GRID` cells a side) and measures
depth by repeated erosion (:func:`erosion_depth`): every step is one whole-array numpy operation, so
the cost grows with the mask's thickness on that grid (at most ``ANCHOR_GRID / 2`` steps), never with a
Python loop over rows or pixels. :func:`distance_transform` is the finer metric (a chamfer transform
within about 8 % of the Euclidean distance), kept for callers and tests that want distances in pixels.
"""

from __future__ import annotations

import math

import numpy as np

#: Side (cells) of the grid label anchors are searched on; larger masks are block-reduced to it.
ANCHOR_GRID = 64

Anchor = tuple[int, int]


def bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box ``(x0, y0, x1, y1)`` of a 2-D mask, end-exclusive, or ``None`` if it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


# ------------------------------------------------------------------------ chamfer distance (pixels)
def _chamfer_pass(dist: np.ndarray, rows: range) -> None:
    """One in-place chamfer sweep over ``rows`` (top-down or bottom-up), vectorised along each row."""
    step = 1.0 if rows.step > 0 else -1.0
    diag = math.sqrt(2.0)
    ramp = np.arange(dist.shape[1], dtype=np.float64)
    prev = None
    for i in rows:
        row = dist[i]
        if prev is not None:
            np.minimum(row, prev + 1.0, out=row)
            np.minimum(row[1:], prev[:-1] + diag, out=row[1:])
            np.minimum(row[:-1], prev[1:] + diag, out=row[:-1])
        # Propagate along the row in the sweep direction: d[j] = min_k (d[k] + |j - k|).
        if step > 0:
            row[:] = ramp + np.minimum.accumulate(row - ramp)
        else:
            row[::-1] = ramp + np.minimum.accumulate(row[::-1] - ramp)
        prev = row


def distance_transform(mask: np.ndarray) -> np.ndarray:
    """Approximate Euclidean distance of each pixel to the nearest background pixel.

    Args:
        mask: ``(H, W)`` bool; everything outside the array counts as background.

    Returns:
        ``(H, W)`` ``float64``: 0 on background, >= 1 inside the mask (a 1 / sqrt(2) chamfer metric,
        within about 8 % of the true Euclidean distance).
    """
    padded = np.pad(np.asarray(mask, dtype=bool), 1)
    dist = np.where(padded, np.inf, 0.0)
    _chamfer_pass(dist, range(dist.shape[0]))
    _chamfer_pass(dist, range(dist.shape[0] - 1, -1, -1))
    return dist[1:-1, 1:-1]


# ------------------------------------------------------------------------------- erosion depth
def erosion_depth(mask: np.ndarray) -> np.ndarray:
    """How many erosions each pixel survives, plus one: 0 on background, 1 on the edge, and so on.

    Erosions alternate between the 4-neighbour cross and the 3x3 square, so the depth is the octagonal
    distance to the background, within about 11 % of the Euclidean one (exact along rows and columns).

    Args:
        mask: ``(H, W)`` bool; everything outside the array counts as background.

    Returns:
        ``(H, W)`` ``int32``.
    """
    current = np.pad(np.asarray(mask, dtype=bool), 1)  # the False border is the outside background
    depth = current.astype(np.int32)
    inner, cross = current[1:-1, 1:-1], True
    while True:
        vertical = current[:-2, 1:-1] & inner & current[2:, 1:-1]
        if cross:
            eroded = vertical & current[1:-1, :-2] & current[1:-1, 2:]
        else:
            rows = current[:-2] & current[1:-1] & current[2:]
            eroded = rows[:, :-2] & vertical & rows[:, 2:]
        if not eroded.any():
            return depth[1:-1, 1:-1]
        inner[...] = eroded  # the border of ``current`` stays False
        depth[1:-1, 1:-1] += eroded
        cross = not cross


def _downscale(crop: np.ndarray, factor: int) -> np.ndarray:
    """Block-reduce a 2-D mask by ``factor``: majority vote, or 'any' if the vote leaves nothing."""
    if factor == 1:
        return crop
    h, w = crop.shape
    padded = np.pad(crop, ((0, -h % factor), (0, -w % factor))).view(np.uint8)
    # Count each block's pixels with ``factor`` strided adds per axis (far cheaper than a 4-D reduction).
    rows = padded[0::factor].astype(np.uint16)
    for k in range(1, factor):
        rows += padded[k::factor]
    counts = rows[:, 0::factor].copy()
    for k in range(1, factor):
        counts += rows[:, k::factor]
    small = 2 * counts >= factor * factor
    return small if small.any() else counts > 0


def _best_cell(small: np.ndarray) -> tuple[int, int]:
    """``(row, col)`` of the deepest cell of ``small``, ties broken towards the mask's centroid."""
    depth = erosion_depth(small)
    ys, xs = np.nonzero(depth == depth.max())
    cy, cx = np.argwhere(small).mean(axis=0)
    best = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return int(ys[best]), int(xs[best])


def label_anchor(mask: np.ndarray) -> Anchor | None:
    """Where to put a mask's label: the mask pixel (near-)farthest from the mask's boundary.

    Works for concave, ring-shaped and fragmented masks (the point is always on the mask, unlike a
    centroid). Large masks are analysed on a block-reduced grid, so the result is near-optimal and fast.

    Args:
        mask: ``(H, W)`` bool.

    Returns:
        ``(x, y)`` of a pixel with ``mask[y, x]`` true, or ``None`` for an empty mask.
    """
    mask = np.asarray(mask, dtype=bool)
    box = bbox(mask)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    crop = mask[y0:y1, x0:x1]
    factor = max(1, math.ceil(max(crop.shape) / ANCHOR_GRID))
    row, col = _best_cell(_downscale(crop, factor))
    # Map the chosen cell back to full resolution: the cell's mask pixel nearest the cell centre.
    block = crop[row * factor : (row + 1) * factor, col * factor : (col + 1) * factor]
    ys, xs = np.nonzero(block)
    centre = (block.shape[0] - 1) / 2.0, (block.shape[1] - 1) / 2.0
    pick = int(np.argmin((ys - centre[0]) ** 2 + (xs - centre[1]) ** 2))
    return x0 + col * factor + int(xs[pick]), y0 + row * factor + int(ys[pick])


def label_anchors(masks: np.ndarray) -> list[Anchor | None]:
    """:func:`label_anchor` of each mask of an ``(N, H, W)`` bool stack (``None`` for empty masks)."""
    return [label_anchor(mask) for mask in np.asarray(masks, dtype=bool)]
