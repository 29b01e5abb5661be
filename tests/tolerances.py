"""How close two SAM 3 outputs must be to count as the same, when they come from different code paths.

Float arithmetic does not promise bit-identical results across batch sizes, thread counts or CPU models
(a batched matmul may sum in another order, AVX-512 and AVX2 kernels round differently), so a mask pixel
whose logit sits on the threshold may flip. Tests that compare the engine with plain transformers, a batch
with single calls, or concurrent callers with sequential ones use these stated tolerances; exact equality is
kept only where it holds by construction (the same call twice on one cached tensor, lossless RLE round trips,
integer bookkeeping).

* masks agree when their IoU is at least :data:`MASK_IOU_MIN` **or** the pixels that differ are at most
  :data:`MASK_PIXEL_FRACTION_MAX` of the image (the second covers tiny and empty masks, where one pixel moves
  the IoU a lot);
* scores (probabilities in [0, 1]) agree within :data:`SCORE_ATOL`;
* boxes (pixel ``x1, y1, x2, y2``) agree within :data:`BOX_ATOL_FRACTION` of the image's longer side;
* benchmark metrics (gIoU, cIoU, AP, in [0, 1]) of two runs whose predictions came from different batches
  agree within :data:`METRIC_ATOL`: masks within the IoU tolerance move a sample's IoU by about 1 %.

Import them in a test module as ``from tolerances import assert_masks_close`` (pytest puts ``tests/`` on the
import path, as for ``conftest``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MASK_IOU_MIN = 0.99
MASK_PIXEL_FRACTION_MAX = 1e-3
SCORE_ATOL = 1e-4
BOX_ATOL_FRACTION = 1e-4
METRIC_ATOL = 0.01


def mask_agreement(actual: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """``(iou, differing_fraction)`` of two ``(H, W)`` masks (IoU of two empty masks is 1)."""
    a, b = np.asarray(actual, dtype=bool), np.asarray(expected, dtype=bool)
    union = int(np.logical_or(a, b).sum())
    differing = int(np.logical_xor(a, b).sum())
    iou = 1.0 if union == 0 else int(np.logical_and(a, b).sum()) / union
    return iou, differing / max(a.size, 1)


def masks_close(actual: np.ndarray, expected: np.ndarray) -> bool:
    """Whether two ``(H, W)`` masks agree within the tolerance (same shape required)."""
    if np.shape(actual) != np.shape(expected):
        return False
    iou, differing = mask_agreement(actual, expected)
    return iou >= MASK_IOU_MIN or differing <= MASK_PIXEL_FRACTION_MAX


def assert_masks_close(actual: Any, expected: Any, what: str = "masks") -> None:
    """Assert two masks, or two ``(N, H, W)`` stacks mask by mask, agree within the tolerance."""
    a, b = np.asarray(actual, dtype=bool), np.asarray(expected, dtype=bool)
    assert a.shape == b.shape, f"{what}: shapes differ, {a.shape} vs {b.shape}"
    stack_a, stack_b = (a[None], b[None]) if a.ndim == 2 else (a, b)
    for index, (one, other) in enumerate(zip(stack_a, stack_b)):
        if not masks_close(one, other):
            iou, differing = mask_agreement(one, other)
            raise AssertionError(
                f"{what}[{index}]: IoU {iou:.5f} < {MASK_IOU_MIN} and {differing:.2e} of the pixels differ "
                f"(> {MASK_PIXEL_FRACTION_MAX})")


def assert_scores_close(actual: Any, expected: Any, what: str = "scores") -> None:
    """Assert two score arrays agree within :data:`SCORE_ATOL`."""
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64),
                               rtol=0, atol=SCORE_ATOL, err_msg=what)


def assert_boxes_close(actual: Any, expected: Any, image_size: Sequence[int], what: str = "boxes") -> None:
    """Assert two ``(N, 4)`` pixel box arrays agree within :data:`BOX_ATOL_FRACTION` of the longer side."""
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64),
                               rtol=0, atol=BOX_ATOL_FRACTION * max(image_size), err_msg=what)


def assert_results_close(actual: Any, expected: Any) -> None:
    """Assert two :class:`~sam3_core.results.PhraseResult` (or dicts with ``masks``, ``scores`` and ``boxes``)
    hold the same instances in the same order within the tolerances."""

    def field(result: Any, name: str) -> np.ndarray:
        return np.asarray(result[name] if isinstance(result, dict) else getattr(result, name))

    masks = field(actual, "masks")
    assert len(field(actual, "scores")) == len(field(expected, "scores")), (
        f"instance counts differ: {len(field(actual, 'scores'))} vs {len(field(expected, 'scores'))}")
    assert_scores_close(field(actual, "scores"), field(expected, "scores"))
    assert_boxes_close(field(actual, "boxes"), field(expected, "boxes"), masks.shape[-2:])
    assert_masks_close(masks, field(expected, "masks"))


def assert_nested_close(actual: Any, expected: Any, atol: float = METRIC_ATOL, what: str = "value") -> None:
    """Assert two JSON-like values (dicts, lists, numbers, strings) are equal, numbers within ``atol``."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), f"{what}: keys differ"
        for key in expected:
            assert_nested_close(actual[key], expected[key], atol, f"{what}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected), f"{what}: lengths differ"
        for index, (one, other) in enumerate(zip(actual, expected)):
            assert_nested_close(one, other, atol, f"{what}[{index}]")
    elif isinstance(expected, (int, float)) and not isinstance(expected, bool):
        assert isinstance(actual, (int, float)), f"{what}: {actual!r} is not a number"
        assert abs(actual - expected) <= atol, f"{what}: {actual} vs {expected} (atol {atol})"
    else:
        assert actual == expected, f"{what}: {actual!r} vs {expected!r}"
