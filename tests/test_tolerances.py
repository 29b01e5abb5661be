"""The tolerance helpers accept float-level differences (a pixel on the threshold) and reject real ones."""

from __future__ import annotations

import numpy as np
import pytest
from tolerances import assert_masks_close, assert_nested_close, assert_results_close, assert_scores_close


def _square(size: int, x0: int, y0: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[y0:y0 + side, x0:x0 + side] = True
    return mask


def test_one_flipped_pixel_passes_a_shifted_mask_fails():
    mask = _square(100, 10, 10, 50)
    flipped = mask.copy()
    flipped[10, 10] = False  # the 1-of-9549-pixels case of issue 10
    assert_masks_close(flipped, mask)
    assert_masks_close(np.zeros((100, 100), bool), np.zeros((100, 100), bool))
    tiny, moved = _square(100, 0, 0, 2), _square(100, 50, 50, 2)  # 8 of 10000 pixels differ: within 1e-3
    assert_masks_close(tiny, moved)
    with pytest.raises(AssertionError, match="IoU"):
        assert_masks_close(_square(100, 12, 10, 50), mask)  # shifted by 2 px: IoU 0.92, 2 % of pixels
    with pytest.raises(AssertionError, match="shapes"):
        assert_masks_close(mask[:50], mask)


def test_scores_boxes_and_metrics():
    assert_scores_close([0.5, 0.25], [0.50005, 0.25])
    with pytest.raises(AssertionError):
        assert_scores_close([0.5], [0.502])
    result = {"masks": _square(100, 10, 10, 50)[None], "scores": np.array([0.3]),
              "boxes": np.array([[10.0, 10.0, 59.0, 59.0]])}
    assert_results_close(result, {**result, "boxes": result["boxes"] + 0.005})
    with pytest.raises(AssertionError):
        assert_results_close(result, {**result, "boxes": result["boxes"] + 1.0})
    with pytest.raises(AssertionError, match="counts"):
        assert_results_close(result, {**result, "scores": np.array([0.3, 0.2])})
    assert_nested_close({"all": {"gIoU": 0.5, "count": 4}}, {"all": {"gIoU": 0.505, "count": 4}})
    with pytest.raises(AssertionError, match="gIoU"):
        assert_nested_close({"all": {"gIoU": 0.5}}, {"all": {"gIoU": 0.6}})
