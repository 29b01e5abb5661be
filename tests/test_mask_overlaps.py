"""Tests for sam3_core.mask_overlaps (through sam3_core.postprocess): pairwise IoU and IoM, IoM removal, mask NMS,
and the packed, box-restricted counting against a straightforward full-frame computation (CPU only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam3_core import mask_overlaps
from sam3_core.errors import UsageError
from sam3_core.mask_overlaps import _greedy_matrix
from sam3_core.packed_masks import PackedMasks
from sam3_core.postprocess import mask_nms, pairwise_mask_iom, pairwise_mask_iou, remove_overlaps_iom

H, W = 40, 50


def _blank(n: int = 1, h: int = H, w: int = W) -> np.ndarray:
    return np.zeros((n, h, w), dtype=bool)


def _overlap_case() -> tuple[np.ndarray, np.ndarray]:
    """Mask 0: big 20x20 square (score 0.6); mask 1: 4x4 square inside it (score 0.9);
    mask 2: 20x20 square shifted by 2 columns from mask 0 (score 0.5, IoU 18/22 with mask 0);
    mask 3: far away 5x5 (score 0.1); mask 4: empty (score 1.0)."""
    masks = _blank(5)
    masks[0, 0:20, 0:20] = True
    masks[1, 5:9, 5:9] = True
    masks[2, 0:20, 2:22] = True
    masks[3, 30:35, 40:45] = True
    return masks, np.array([0.6, 0.9, 0.5, 0.1, 1.0])


def test_pairwise_iou_and_iom_values() -> None:
    masks, _ = _overlap_case()
    iou = pairwise_mask_iou(masks, masks)
    iom = pairwise_mask_iom(masks, masks)
    assert isinstance(iou, np.ndarray)
    assert iou.shape == (5, 5)
    assert iou.dtype == np.float32
    assert iou[0, 1] == pytest.approx(16 / 400)
    assert iou[0, 2] == pytest.approx(360 / 440)
    assert iom[0, 1] == pytest.approx(1.0)
    assert iom[1, 2] == pytest.approx(1.0)
    assert iom[0, 2] == pytest.approx(360 / 400)
    assert iou[0, 3] == 0 and iom[0, 3] == 0
    assert iou[4, 4] == 0 and iom[4, 4] == 0  # empty masks score 0, never NaN
    np.testing.assert_allclose(np.diag(iou)[:4], 1.0)


def test_iom_removes_small_mask_inside_big_one_but_nms_keeps_it() -> None:
    masks = _blank(2)
    masks[0, 0:20, 0:20] = True  # big, higher score
    masks[1, 5:9, 5:9] = True  # small, fully inside (IoM 1.0, IoU 0.04)
    scores = np.array([0.8, 0.7])
    assert remove_overlaps_iom(masks, scores) == [0]
    assert mask_nms(masks, scores) == [0, 1]
    # a small mask inside a big *lower*-scoring mask: the big one goes under IoM
    scores = np.array([0.3, 0.7])
    assert remove_overlaps_iom(masks, scores) == [1]
    assert mask_nms(masks, scores) == [1, 0]


def test_suppression_on_five_mask_case() -> None:
    masks, scores = _overlap_case()
    # order by score: 4 (empty, dropped), 1, 0, 2, 3
    # IoM: keep 1; 0 contains 1 (IoM 1.0) -> drop; 2 contains 1 -> drop; 3 disjoint -> keep
    assert remove_overlaps_iom(masks, scores, iom_threshold=0.5) == [1, 3]
    # IoU 0.5: keep 1; 0 vs 1 = 0.04 -> keep; 2 vs 0 = 0.82 -> drop; 3 -> keep
    assert mask_nms(masks, scores, iou_threshold=0.5) == [1, 0, 3]
    # a looser IoU threshold keeps the shifted square too
    assert mask_nms(masks, scores, iou_threshold=0.85) == [1, 0, 2, 3]
    # threshold is strict: IoM 0.9 between 0 and 2 is not > 0.9
    assert remove_overlaps_iom(masks[[0, 2]], scores[[0, 2]], iom_threshold=0.9) == [0, 1]


def test_suppression_ties_and_empty_inputs() -> None:
    masks = _blank(2)
    masks[:, 0:10, 0:10] = True  # identical masks, identical scores: the lower index wins
    assert mask_nms(masks, [0.5, 0.5]) == [0]
    assert remove_overlaps_iom(_blank(0), np.zeros(0)) == []
    assert mask_nms(_blank(3), [0.1, 0.2, 0.3]) == []
    with pytest.raises(UsageError):
        mask_nms(masks, [0.5])


def test_torch_input_gives_same_result_as_numpy() -> None:
    masks, scores = _overlap_case()
    t_masks, t_scores = torch.from_numpy(masks), torch.from_numpy(scores).float()
    keep_iom = remove_overlaps_iom(t_masks, t_scores)
    keep_nms = mask_nms(t_masks, t_scores)
    assert isinstance(keep_iom, torch.Tensor)
    assert keep_iom.dtype == torch.int64
    assert keep_iom.tolist() == remove_overlaps_iom(masks, scores)
    assert keep_nms.tolist() == mask_nms(masks, scores)
    iou = pairwise_mask_iou(t_masks, t_masks)
    assert isinstance(iou, torch.Tensor)
    np.testing.assert_allclose(iou.numpy(), pairwise_mask_iou(masks, masks))


def test_pairwise_matches_loop_on_random_masks() -> None:
    rng = np.random.default_rng(4)
    a = rng.random((4, 16, 18)) < 0.3
    b = rng.random((3, 16, 18)) < 0.6
    iou = pairwise_mask_iou(a, b)
    iom = pairwise_mask_iom(a, b)
    for i in range(4):
        for j in range(3):
            inter = (a[i] & b[j]).sum()
            assert iou[i, j] == pytest.approx(inter / (a[i] | b[j]).sum())
            assert iom[i, j] == pytest.approx(inter / min(a[i].sum(), b[j].sum()))
    with pytest.raises(UsageError):
        pairwise_mask_iou(a, b[:, :8])


# ------------------------------------------------------------------------------------------------
# the packed, box-restricted counting against the straightforward full-frame computation
# ------------------------------------------------------------------------------------------------


def _random_instances(rng: np.random.Generator, n: int, height: int, width: int) -> np.ndarray:
    """Rectangles, noisy blobs, copies of earlier masks and empty masks at random places."""
    masks = np.zeros((n, height, width), dtype=bool)
    for i in range(n):
        kind = rng.integers(5)
        y0, x0 = rng.integers(height), rng.integers(width)
        y1, x1 = rng.integers(y0, height + 1), rng.integers(x0, width + 1)
        if kind == 0:
            masks[i, y0:y1, x0:x1] = True
        elif kind == 1:
            masks[i, y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.6
        elif kind == 2 and i:
            masks[i] = masks[rng.integers(i)]  # an exact copy: IoU and IoM 1, ties
        elif kind == 3:
            masks[i] = rng.random((height, width)) < 0.2
        # kind 4 (or a copy with nothing to copy): empty
    return masks


def _reference_ratio(a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    """Pairwise IoU or IoM by full-frame loops: exact counts, then the float32 quotient; 0 for no area."""
    out = np.zeros((len(a), len(b)), dtype=np.float32)
    for i in range(len(a)):
        for j in range(len(b)):
            inter = int((a[i] & b[j]).sum())
            area_a, area_b = int(a[i].sum()), int(b[j].sum())
            denominator = area_a + area_b - inter if kind == "iou" else min(area_a, area_b)
            out[i, j] = np.float32(inter) / np.float32(denominator) if denominator else 0.0
    return out


def _reference_keep(masks: np.ndarray, scores: np.ndarray, threshold: float, kind: str) -> list[int]:
    """Greedy suppression by the definition: descending score, lower index first on ties, empties dropped."""
    ratio = _reference_ratio(masks, masks, kind)
    order = sorted(range(len(masks)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for j in order:
        if masks[j].any() and all(ratio[k, j] <= np.float32(threshold) for k in kept):
            kept.append(j)
    return kept


@pytest.mark.parametrize("seed", range(6))
def test_suppression_matches_full_frame_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(1, 40)), int(rng.integers(1, 140))  # widths across 64-pixel words
    masks = _random_instances(rng, int(rng.integers(0, 14)), height, width)
    scores = rng.integers(0, 4, size=len(masks)) / 4  # few distinct scores: many ties
    for threshold in (0.0, 0.25, 0.5, 0.9, 1.0, 1.5):
        expected_iom = _reference_keep(masks, scores, threshold, "iom")
        expected_iou = _reference_keep(masks, scores, threshold, "iou")
        assert remove_overlaps_iom(masks, scores, threshold) == expected_iom
        assert mask_nms(masks, scores, threshold) == expected_iou
        # the matrix path (used for masks on an accelerator) gives the same, here on CPU tensors
        tensor, order = torch.from_numpy(masks), torch.argsort(torch.from_numpy(-scores), stable=True)
        assert _greedy_matrix(tensor, order, threshold, mask_overlaps._iom) == expected_iom
        assert _greedy_matrix(tensor, order, threshold, mask_overlaps._iou) == expected_iou


@pytest.mark.parametrize("seed", range(4))
def test_pairwise_matches_full_frame_reference(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    height, width = int(rng.integers(1, 30)), int(rng.integers(1, 200))
    a = _random_instances(rng, int(rng.integers(0, 8)), height, width)
    b = np.concatenate([a[: len(a) // 2], _random_instances(rng, int(rng.integers(0, 8)), height, width)])
    np.testing.assert_array_equal(pairwise_mask_iou(a, b), _reference_ratio(a, b, "iou"))
    np.testing.assert_array_equal(pairwise_mask_iom(a, b), _reference_ratio(a, b, "iom"))
    counts = PackedMasks(a).intersection_matrix(PackedMasks(b))
    np.testing.assert_array_equal(counts, (a[:, None] & b[None]).sum(axis=(2, 3)))


def test_packed_masks_boxes_areas_and_degenerate_shapes() -> None:
    masks = _blank(3, 10, 130)
    masks[0, 2:5, 60:70] = True  # straddles the 64-pixel word boundary
    masks[1, 7, 129] = True  # the last pixel of a padded word
    packed = PackedMasks(masks)
    assert packed.areas.tolist() == [30, 1, 0]
    assert packed.rows.tolist() == [[2, 5], [7, 8], [0, 0]]
    assert packed.cols.tolist() == [[0, 2], [2, 3], [0, 0]]
    assert packed.intersection_matrix(packed).tolist() == [[30, 0, 0], [0, 1, 0], [0, 0, 0]]
    for shape in ((2, 5, 0), (2, 0, 5), (0, 5, 5)):
        empty = np.zeros(shape, dtype=bool)
        assert pairwise_mask_iou(empty, empty).shape == (shape[0], shape[0])
        assert remove_overlaps_iom(empty, np.ones(shape[0])) == []
    with pytest.raises(UsageError):
        pairwise_mask_iom(masks, masks[:, :, :64])


def test_packed_masks_take_concatenate_and_misuse() -> None:
    rng = np.random.default_rng(9)
    masks = _random_instances(rng, 5, 12, 70)
    packed = PackedMasks(masks)
    rebuilt = PackedMasks.concatenate([packed.take([3]), packed.take([0, 1])], (12, 70))
    expected = PackedMasks(masks[[3, 0, 1]])
    np.testing.assert_array_equal(rebuilt.intersection_matrix(packed), expected.intersection_matrix(packed))
    np.testing.assert_array_equal(rebuilt.areas, expected.areas)
    assert len(PackedMasks.concatenate([], (12, 70))) == 0
    with pytest.raises(UsageError):
        PackedMasks.concatenate([packed], (12, 71))
    with pytest.raises(UsageError):
        PackedMasks(masks.astype(np.uint8))
