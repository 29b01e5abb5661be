"""Checking the numbers callers send with a prompt: clicks, boxes and thresholds.

One policy for every path (image segment, refine, video prompts), because a coordinate that is not a
finite number, or that lies absurdly far outside the image, costs the model real work (``roi_align``
samples a box in proportion to its area) and can turn into ``inf`` or ``NaN`` once it is cast to
float32 (``1e39`` is finite in float64 but not in float32):

* every value must be a finite number, else :class:`~sam3_core.errors.PromptError`;
* a click must lie on the image (``0 <= x <= W``, ``0 <= y <= H``), else ``PromptError``;
* a box must have ``x2 > x1`` and ``y2 > y1``; a box reaching past the image edge is clipped to the
  image, but a coordinate more than one image side beyond the edge is refused as a mistake, and so is
  a box with nothing left after clipping;
* score and mask thresholds must be finite and within ``[0, 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import PromptError

#: How far past the image edge a box coordinate may reach, in image sides, before it is refused.
BOX_MARGIN_SIDES = 1.0


def _as_float_array(values, what: str, shape_text: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PromptError(f"{what} must be {shape_text} of numbers: {exc}") from exc
    if not np.isfinite(array).all():
        raise PromptError(f"{what} must hold finite numbers only (no NaN or infinity), got {_short(values)}")
    return array


def _short(values) -> str:
    text = repr(values if not isinstance(values, np.ndarray) else values.tolist())
    return text if len(text) <= 80 else text[:77] + "..."


def check_points(points: Sequence[Sequence[float]], size_hw: tuple[int, int], what: str = "points") -> np.ndarray:
    """Pixel ``(x, y)`` clicks as a ``(P, 2)`` float64 array, each on the ``(H, W)`` image.

    Raises:
        PromptError: not a non-empty list of pairs, a value not finite, or a click off the image.
    """
    array = _as_float_array(points, what, "a list of pixel [x, y] pairs")
    if array.ndim != 2 or array.shape[1] != 2 or len(array) == 0:
        raise PromptError(f"{what} must be a non-empty list of pixel [x, y] pairs, got shape {array.shape}")
    height, width = size_hw
    off = (array[:, 0] < 0) | (array[:, 0] > width) | (array[:, 1] < 0) | (array[:, 1] > height)
    if off.any():
        point = array[int(np.argmax(off))].tolist()
        raise PromptError(f"a point {_short(point)} lies outside the {width}x{height} image (pixel x, y with "
                          f"0 <= x <= {width}, 0 <= y <= {height})")
    return array


def clip_boxes(boxes: Sequence[Sequence[float]], size_hw: tuple[int, int], what: str = "boxes") -> np.ndarray:
    """Pixel ``x1, y1, x2, y2`` boxes as an ``(N, 4)`` float64 array clipped to the ``(H, W)`` image.

    Raises:
        PromptError: not a list of 4-number boxes, a value not finite, ``x2 <= x1`` or ``y2 <= y1``, a
            coordinate more than one image side outside the image, or a box that misses the image.
    """
    array = _as_float_array(boxes, what, "a list of pixel [x1, y1, x2, y2] boxes")
    if array.ndim != 2 or array.shape[1] != 4 or len(array) == 0:
        raise PromptError(f"{what} must be a non-empty list of pixel [x1, y1, x2, y2] boxes, got shape {array.shape}")
    if (array[:, 2] <= array[:, 0]).any() or (array[:, 3] <= array[:, 1]).any():
        raise PromptError(f"every box in {what} needs x2 > x1 and y2 > y1 (pixel x1, y1, x2, y2)")
    height, width = size_hw
    sides = np.array([width, height, width, height], dtype=np.float64)
    far = (array < -BOX_MARGIN_SIDES * sides) | (array > (1 + BOX_MARGIN_SIDES) * sides)
    if far.any():
        box = array[int(np.argmax(far.any(axis=1)))].tolist()
        raise PromptError(f"{what}: {_short(box)} lies far outside the {width}x{height} image; give "
                          "pixel x1, y1, x2, y2 within the image (boxes slightly past an edge are clipped)")
    clipped = np.clip(array, 0.0, sides)
    empty = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    if empty.any():
        box = array[int(np.argmax(empty))].tolist()
        raise PromptError(f"{what}: {_short(box)} does not overlap the {width}x{height} image")
    return clipped


def check_threshold(value: float, name: str) -> float:
    """``value`` as a float in ``[0, 1]``; :class:`PromptError` naming ``name`` otherwise (NaN included)."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PromptError(f"{name} must be a number between 0 and 1, got {_short(value)}") from exc
    if not (0.0 <= number <= 1.0):  # also false for NaN
        raise PromptError(f"{name} must be a number between 0 and 1, got {number}")
    return number
