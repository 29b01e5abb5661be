"""The fast CPU paths of frame results (numpy threshold, boxes and overlap resolution) against plain references.

Every reference here is the obvious full-frame computation, written independently of the code under test:
boxes from ``np.nonzero`` per mask, overlaps by scanning objects in index order and keeping the best score per
pixel (a strictly higher score wins, so ties stay with the earlier object), thresholds with torch's ``> 0``.
Both sides upsample the very same batch of logits, so masks, boxes and ids must match exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sam3_core.postprocess import masks_to_boxes
from sam3_core.video.cleanup import fill_holes_and_remove_sprinkles, resolve_overlaps
from sam3_core.video.results import RawFrame, build_frame_result

# ------------------------------------------------------------------------------------------------
# references
# ------------------------------------------------------------------------------------------------


def reference_boxes(masks: np.ndarray) -> np.ndarray:
    """``(N, 4)`` float32 exclusive ``x1, y1, x2, y2`` per mask; zeros for an empty one."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if ys.size:
            boxes[i] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    return boxes


def reference_resolve(masks: np.ndarray, scores: np.ndarray, groups: list[int]) -> np.ndarray:
    """Each pixel claimed inside a group goes to the highest score; on ties, the earliest object."""
    out = masks.copy()
    for group in set(groups):
        members = [i for i, g in enumerate(groups) if g == group]
        best = np.full(masks.shape[1:], -np.inf)
        owner = np.full(masks.shape[1:], -1)
        for i in members:  # index order + strict '>' keeps ties with the earlier object
            wins = masks[i] & (scores[i] > best)
            best[wins], owner[wins] = scores[i], i
        for i in members:
            out[i] = masks[i] & (owner == i)
    return out


def reference_frame(raw: RawFrame, hidden: set[int], groups: dict[int, int], frame_size: tuple[int, int],
                    fill_hole_area: int) -> tuple[list[int], np.ndarray, np.ndarray]:
    """ids, masks and boxes of a frame: the straightforward full-frame computation."""
    keep = [i for i, o in enumerate(raw.object_ids) if o not in hidden and o not in raw.hidden]
    ids, logits = [raw.object_ids[i] for i in keep], raw.logits[keep].float()
    # objects without a positive low-res logit are empty at any size; both sides upsample the rest as one batch
    alive = [i for i in range(len(ids)) if (logits[i] > 0).any()]
    ids, logits = [ids[i] for i in alive], logits[alive]
    if not ids:
        return [], np.zeros((0, *frame_size), bool), np.zeros((0, 4), np.float32)
    if not raw.cleaned:
        logits = fill_holes_and_remove_sprinkles(logits, fill_hole_area)
    up = F.interpolate(logits.unsqueeze(1), size=frame_size, mode="bilinear", align_corners=False).squeeze(1)
    masks = (up > 0).numpy()
    scores = np.array([raw.tracker_scores.get(i, 0.0) for i in ids], np.float32)
    masks = reference_resolve(masks, scores, [groups.get(i, -1) for i in ids])
    drawn = [i for i in range(len(ids)) if masks[i].any()]
    return [ids[i] for i in drawn], masks[drawn], reference_boxes(masks[drawn])


# ------------------------------------------------------------------------------------------------
# random inputs
# ------------------------------------------------------------------------------------------------


def random_masks(rng: np.random.Generator, n: int, height: int, width: int) -> np.ndarray:
    """Rectangles and speckle, some touching the borders, some empty, some duplicated."""
    masks = np.zeros((n, height, width), bool)
    for i in range(n):
        kind = rng.integers(5)
        if kind == 0:
            continue  # empty
        if kind == 1 and i:
            masks[i] = masks[rng.integers(i)]  # an exact duplicate of an earlier one
            continue
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        y1, x1 = rng.integers(y0, height + 1), rng.integers(x0, width + 1)
        masks[i, y0:y1 + 1, x0:x1 + 1] = True  # may run to the last row / column
        if kind == 4:
            masks[i] |= rng.random((height, width)) < 0.02
    return masks


def blob_logits(rng: np.random.Generator, n: int, low: tuple[int, int]) -> torch.Tensor:
    """``(n, h, w)`` float32 logits: noisy discs (some off the edges), and a few objects with no positive."""
    yy, xx = np.mgrid[0:low[0], 0:low[1]].astype(np.float32)
    out = np.empty((n, *low), np.float32)
    for i in range(n):
        cy, cx = rng.uniform(-2, low[0] + 2), rng.uniform(-2, low[1] + 2)
        radius = rng.uniform(0.5, max(low) / 3)
        out[i] = radius - np.hypot(yy - cy, xx - cx) + rng.normal(0, 0.4, low)
        if rng.random() < 0.15:
            out[i] = -np.abs(out[i]) - 0.01  # lost object
        elif rng.random() < 0.3:
            out[i] = np.clip(np.round(out[i]), -1, 1)  # exact zeros: upsampled zeros must stay background
    return torch.from_numpy(out)


SIZES = [((32, 32), (240, 320)), ((13, 9), (37, 53)), ((32, 32), (31, 17)), ((8, 8), (8, 8)), ((5, 7), (1, 40))]


# ------------------------------------------------------------------------------------------------
# masks_to_boxes
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_masks_to_boxes_matches_reference_for_numpy_and_tensors(seed):
    rng = np.random.default_rng(seed)
    for height, width in [(1, 1), (1, 9), (7, 1), (240, 320), (37, 53)]:
        masks = random_masks(rng, int(rng.integers(0, 12)), height, width)
        expected = reference_boxes(masks)
        got = masks_to_boxes(masks)
        assert isinstance(got, np.ndarray) and got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
        as_tensor = masks_to_boxes(torch.from_numpy(masks))
        assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.float32
        np.testing.assert_array_equal(as_tensor.numpy(), expected)
        # non-contiguous and non-bool inputs take the same path
        flipped = torch.from_numpy(np.ascontiguousarray(masks.transpose(0, 2, 1))).transpose(1, 2)
        np.testing.assert_array_equal(masks_to_boxes(flipped).numpy(), expected)
        np.testing.assert_array_equal(masks_to_boxes(masks.astype(np.uint8) * 7), expected)


# ------------------------------------------------------------------------------------------------
# resolve_overlaps
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_resolve_overlaps_matches_reference(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 40))
    height, width = [(240, 320), (37, 53), (1, 30), (30, 1)][seed % 4]
    masks = random_masks(rng, n, height, width)
    scores = rng.choice([0.1, 0.5, 0.5, 0.9], size=n) if seed % 2 else rng.random(n)  # many ties when odd
    groups = [int(g) for g in rng.choice([-1, -1, 0, 1, 2], size=n)]
    expected = reference_resolve(masks, scores, groups)
    score_tensor = torch.from_numpy(scores.astype(np.float32))
    got = resolve_overlaps(torch.from_numpy(masks), score_tensor, groups)
    assert got.dtype == torch.bool and got.shape == masks.shape
    np.testing.assert_array_equal(got.numpy(), expected)
    # the integer-rank path (taken off the CPU, or for non-bool masks) gives the same pixels
    ranked = resolve_overlaps(torch.from_numpy(masks.astype(np.uint8)), score_tensor, groups)
    np.testing.assert_array_equal(ranked.numpy().astype(bool), expected)
    assert not np.shares_memory(got.numpy(), masks)  # a new array: the caller's masks stay as they were


def test_resolve_overlaps_inputs_are_not_changed_and_cases_do_overlap():
    rng = np.random.default_rng(7)
    masks = random_masks(rng, 30, 60, 80)
    before = masks.copy()
    scores = rng.random(30)
    groups = [0] * 30
    out = resolve_overlaps(torch.from_numpy(masks), torch.from_numpy(scores), groups).numpy()
    np.testing.assert_array_equal(masks, before)
    assert (masks.sum(axis=0) > 1).any(), "the random masks must overlap for the comparison to mean anything"
    assert (out.sum(axis=0) <= 1).all() and not np.array_equal(out, masks)
    np.testing.assert_array_equal(out.any(axis=0), masks.any(axis=0))  # every claimed pixel keeps one owner


def test_resolve_overlaps_without_shared_groups_returns_the_input():
    masks = torch.ones(3, 4, 5, dtype=torch.bool)
    assert resolve_overlaps(masks, torch.tensor([0.1, 0.2, 0.3]), [0, 1, 2]) is masks
    single = masks[:1]
    assert resolve_overlaps(single, torch.tensor([0.1]), [0]) is single


# ------------------------------------------------------------------------------------------------
# build_frame_result
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_build_frame_result_matches_full_frame_reference(seed):
    rng = np.random.default_rng(1000 + seed)
    low, frame_size = SIZES[seed % len(SIZES)]
    n = int(rng.choice([1, 2, 16, 40]))
    ids = [int(i) for i in rng.permutation(200)[:n]]
    raw = RawFrame(seed, ids, blob_logits(rng, n, low),
                   scores={i: float(rng.random()) for i in ids},
                   tracker_scores={i: float(rng.choice([0.3, 0.6, 0.6, rng.random()])) for i in ids},
                   hidden={ids[0]} if n > 2 and seed % 3 == 0 else set(), cleaned=seed % 2 == 0)
    groups = {i: int(rng.choice([-1, 0, 1])) for i in ids}
    hidden = {ids[-1]} if n > 3 and seed % 4 == 1 else set()
    fill = 0 if raw.cleaned else int(rng.choice([0, 4]))
    result = build_frame_result(raw, hidden=hidden, groups=groups, phrases={0: "a", 1: "b"},
                                frame_size=frame_size, fill_hole_area=fill)
    want_ids, want_masks, want_boxes = reference_frame(raw, hidden, groups, frame_size, fill)
    assert result.object_ids == want_ids
    assert result.masks.dtype == bool and result.masks.shape == (len(want_ids), *frame_size)
    np.testing.assert_array_equal(result.masks, want_masks)
    np.testing.assert_array_equal(result.boxes, want_boxes)
    assert result.phrases == [{0: "a", 1: "b"}.get(groups[i]) for i in want_ids]
    np.testing.assert_array_equal(result.tracker_scores,
                                  np.array([raw.tracker_scores[i] for i in want_ids], np.float32))


def test_build_frame_result_large_frame_from_sam3_resolution():
    """SAM 3's 288x288 low-res masks to a 1080x1920 frame (an odd ratio), objects touching the borders."""
    rng = np.random.default_rng(5)
    logits = blob_logits(rng, 4, (288, 288))
    logits[0, :3] = 2.0  # top rows
    logits[1, :, -2:] = 2.0  # right columns
    raw = RawFrame(0, [1, 2, 3, 4], logits, {}, {1: 0.5, 2: 0.5, 3: 0.7, 4: 0.1}, cleaned=True)
    groups = {1: 0, 2: 0, 3: 0, 4: 1}
    result = build_frame_result(raw, hidden=set(), groups=groups, phrases={}, frame_size=(1080, 1920),
                                fill_hole_area=0)
    want_ids, want_masks, want_boxes = reference_frame(raw, set(), groups, (1080, 1920), 0)
    assert result.object_ids == want_ids and len(want_ids) >= 2
    np.testing.assert_array_equal(result.boxes, want_boxes)
    np.testing.assert_array_equal(result.masks, want_masks)
    assert (want_boxes[:, 1] == 0).any() and (want_boxes[:, 2] == 1920).any()


def test_frame_results_benchmark_runs(tmp_path):
    from conftest import load_bench

    out = tmp_path / "video_results.json"
    threads = torch.get_num_threads()
    report = load_bench("video_results").main(["--objects", "1", "3", "--low", "8", "8", "--size", "24", "40",
                                                "--repeats", "1", "--calls", "1", "--out", str(out)])
    assert torch.get_num_threads() == threads  # restored
    assert [row["objects"] for row in report["rows"]] == [1, 3]
    assert all(row["total_ms"] > 0 and row["resolve_speedup"] > 0 for row in report["rows"])
    assert report == json.loads(out.read_text())
