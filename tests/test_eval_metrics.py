"""Tests for eval.metrics: LISA-style intersection/union with ignore pixels, gIoU, cIoU, groups, restarts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eval.metrics import IoUAccumulator, IoURecord, intersection_and_union, sample_iou, score
from sam3_core.errors import InputError


def _mask(shape: tuple[int, int], pixels: list[tuple[int, int]]) -> np.ndarray:
    """Boolean mask with the given (row, col) pixels set."""
    out = np.zeros(shape, dtype=bool)
    for r, c in pixels:
        out[r, c] = True
    return out


SHAPE = (4, 4)
TARGET = _mask(SHAPE, [(0, 0), (0, 1), (1, 0), (1, 1)])
PRED = _mask(SHAPE, [(0, 1), (1, 1), (2, 1), (0, 2)])
IGNORE = _mask(SHAPE, [(0, 2), (1, 0)])  # (0, 2) is prediction-only, (1, 0) is target-only


def test_intersection_and_union_without_ignore() -> None:
    # I = {(0,1), (1,1)}; U = {(0,0), (0,1), (1,0), (1,1), (2,1), (0,2)}.
    assert intersection_and_union(PRED, TARGET) == (2, 6)


def test_ignored_pixels_count_in_neither_intersection_nor_union() -> None:
    # Dropping (0,2) and (1,0) removes two union pixels and no intersection pixel.
    assert intersection_and_union(PRED, TARGET, IGNORE) == (2, 4)


def test_prediction_inside_ignore_region_is_free() -> None:
    pred = IGNORE.copy()
    # Nothing of the prediction survives; the union is the target minus its ignored pixel (1,0).
    assert intersection_and_union(pred, TARGET, IGNORE) == (0, 3)


def test_sample_iou_uses_lisa_epsilon_and_scores_empty_union_as_one() -> None:
    assert sample_iou(2, 4) == pytest.approx(2 / (4 + 1e-5), rel=0, abs=1e-15)
    assert sample_iou(2, 4) < 0.5  # the epsilon is really there
    assert sample_iou(0, 0) == 1.0
    assert sample_iou(0, 5) == 0.0


def test_empty_prediction_on_fully_ignored_target_scores_one() -> None:
    target = _mask(SHAPE, [(3, 3)])
    ignore = _mask(SHAPE, [(3, 3)])
    empty = np.zeros(SHAPE, dtype=bool)
    i, u = intersection_and_union(empty, target, ignore)
    assert (i, u) == (0, 0)
    assert sample_iou(i, u) == 1.0


def test_giou_and_ciou_by_hand() -> None:
    acc = IoUAccumulator()
    acc.add("a", PRED, TARGET, IGNORE)  # I=2, U=4
    empty = np.zeros(SHAPE, dtype=bool)
    acc.add("b", empty, empty)  # I=0, U=0 -> 1.0
    acc.add_counts("c", 1, 3)
    result = acc.summary()["all"]
    expected_giou = (2 / (4 + 1e-5) + 1.0 + 1 / (3 + 1e-5)) / 3
    expected_ciou = (2 + 0 + 1) / (4 + 0 + 3 + 1e-10)
    assert result.giou == pytest.approx(expected_giou, rel=1e-12)
    assert result.ciou == pytest.approx(expected_ciou, rel=1e-12)
    assert (result.count, result.intersection, result.union) == (3, 3, 7)


def test_groups_short_long_all() -> None:
    acc = IoUAccumulator()
    acc.add_counts("s1", 3, 4, groups=["short"])
    acc.add_counts("s2", 0, 2, groups=["short"])
    acc.add_counts("l1", 5, 5, groups=["long"])
    summary = acc.summary()
    assert list(summary) == ["all", "short", "long"]
    assert summary["short"].giou == pytest.approx((3 / (4 + 1e-5) + 0.0) / 2, rel=1e-12)
    assert summary["short"].ciou == pytest.approx(3 / 6, rel=1e-9)
    assert summary["long"].giou == pytest.approx(5 / (5 + 1e-5), rel=1e-12)
    assert summary["all"].ciou == pytest.approx(8 / 11, rel=1e-9)
    assert summary["all"].count == 3


def test_restart_from_stored_records_gives_identical_numbers() -> None:
    acc = IoUAccumulator()
    rng = np.random.default_rng(0)
    for k in range(20):
        pred, target = rng.random((9, 7)) > 0.5, rng.random((9, 7)) > 0.6
        ignore = rng.random((9, 7)) > 0.9
        acc.add(f"s{k}", pred, target, ignore, groups=["long" if k % 3 else "short"])
    stored = json.loads(json.dumps([r.to_dict() for r in acc.records]))
    half = IoUAccumulator.from_records(stored[:10])
    for item in stored[10:]:  # the restarted run continues where it stopped
        half.add_record(IoURecord.from_dict(item))
    assert half.summary() == acc.summary()
    assert IoUAccumulator.from_records(acc.records).summary() == acc.summary()


def test_duplicate_sample_is_rejected() -> None:
    acc = IoUAccumulator()
    acc.add_counts("x", 1, 2)
    with pytest.raises(InputError, match="already scored"):
        acc.add_counts("x", 1, 2)
    assert len(acc) == 1 and "x" in acc


def test_shape_mismatch_and_bad_counts_raise() -> None:
    with pytest.raises(InputError, match="shape"):
        intersection_and_union(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(InputError, match="ignore mask shape"):
        intersection_and_union(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((3, 2)))
    with pytest.raises(InputError, match="intersection <= union"):
        IoURecord("bad", 3, 2)
    with pytest.raises(InputError, match="malformed"):
        IoURecord.from_dict({"sample_id": "y", "union": 2})


def test_empty_score_is_zero() -> None:
    assert score([]).giou == 0.0 and score([]).count == 0
