"""The clean-up steps transformers skips offline: connected components, holes/sprinkles, NMS, overlaps."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from sam3_core.video.cleanup import (
    FILLED_LOGIT,
    REMOVED_LOGIT,
    connected_components,
    fill_holes_and_remove_sprinkles,
    resolve_overlaps,
    suppress_duplicates,
)


def component_areas(mask: np.ndarray) -> np.ndarray:
    """Reference: 8-connected component area of every foreground pixel, by breadth-first search."""
    return reference_components(mask)[1]


def reference_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Component number (1, 2, ...) and area of every foreground pixel, by breadth-first search."""
    height, width = mask.shape
    numbers = np.zeros(mask.shape, dtype=np.int64)
    areas = np.zeros(mask.shape, dtype=np.int64)
    seen = np.zeros(mask.shape, dtype=bool)
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        queue, members = deque([(y, x)]), []
        seen[y, x] = True
        while queue:
            cy, cx = queue.popleft()
            members.append((cy, cx))
            for ny in range(max(cy - 1, 0), min(cy + 2, height)):
                for nx in range(max(cx - 1, 0), min(cx + 2, width)):
                    if mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
        for cy, cx in members:
            areas[cy, cx] = len(members)
            numbers[cy, cx] = numbers.max() + 1 if (cy, cx) == members[0] else numbers[members[0]]
    return numbers, areas


def spiral(size: int) -> np.ndarray:
    """A one-pixel-wide square spiral: the worst case for label propagation (long geodesic path)."""
    mask = np.zeros((size, size), dtype=bool)
    top, left, bottom, right = 0, 0, size - 1, size - 1
    while top <= bottom and left <= right:
        mask[top, left:right + 1] = True
        mask[top:bottom + 1, right] = True
        mask[bottom, left:right + 1] = True
        mask[top + 2:bottom + 1, left] = True
        top, left, bottom, right = top + 2, left + 2, bottom - 2, right - 2
    return mask


@pytest.mark.parametrize("density", [0.3, 0.55, 0.8])
def test_connected_components_match_breadth_first_search(density):
    rng = np.random.default_rng(int(density * 100))
    masks = rng.random((4, 23, 31)) < density
    labels, areas = connected_components(torch.from_numpy(masks))
    for mask, label, area in zip(masks, labels.numpy(), areas.numpy()):
        numbers, expected_areas = reference_components(mask)
        np.testing.assert_array_equal(area, expected_areas)
        assert (label[~mask] == 0).all() and (label[mask] > 0).all()
        # pixels share a label exactly when they share a component
        pairs = set(zip(numbers[mask].tolist(), label[mask].tolist()))
        assert len(pairs) == len({n for n, _ in pairs}) == len({lab for _, lab in pairs})


def test_connected_components_spiral_and_empty():
    mask = spiral(33)
    _, areas = connected_components(torch.from_numpy(mask)[None])
    np.testing.assert_array_equal(areas[0].numpy(), component_areas(mask))
    labels, areas = connected_components(torch.zeros(0, 5, 5, dtype=torch.bool))
    assert labels.shape == areas.shape == (0, 5, 5)


def test_fill_holes_and_remove_sprinkles_follow_transformers_rule():
    mask = torch.zeros(40, 40, dtype=torch.bool)
    mask[5:30, 5:30] = True          # the object, 625 px
    mask[10:13, 10:13] = False       # a 9 px hole: filled
    mask[15:22, 15:22] = False       # a 49 px hole: kept (above max_area=16)
    mask[35:37, 35:37] = True        # a 4 px speck: removed
    logits = torch.where(mask, 3.0, -3.0)[None]
    cleaned = fill_holes_and_remove_sprinkles(logits, max_area=16)[0]
    assert (cleaned[10:13, 10:13] == FILLED_LOGIT).all()
    assert (cleaned[15:22, 15:22] < 0).all()
    assert (cleaned[35:37, 35:37] == REMOVED_LOGIT).all()
    assert ((cleaned > 0) == (mask & ~_box(35, 37)) | _box(10, 13)).all()
    assert torch.equal(fill_holes_and_remove_sprinkles(logits, 0), logits)


def _box(start: int, stop: int) -> torch.Tensor:
    out = torch.zeros(40, 40, dtype=torch.bool)
    out[start:stop, start:stop] = True
    return out


def test_tiny_objects_are_not_erased_whole():
    logits = torch.full((1, 20, 20), -4.0)
    logits[0, 3:5, 3:5] = 4.0        # a 4 px object, alone in its mask: half its area is 2 < 4, kept
    cleaned = fill_holes_and_remove_sprinkles(logits, max_area=16)
    assert (cleaned[0, 3:5, 3:5] > 0).all()


def test_suppress_duplicates_within_groups():
    masks = torch.zeros(4, 10, 10, dtype=torch.bool)
    masks[0, :5] = True
    masks[1, :6] = True              # duplicate of 0 (IoU 5/6), lower score: dropped
    masks[2, :6] = True              # same pixels, other phrase: kept
    masks[3, 7:] = True              # elsewhere: kept
    dropped = suppress_duplicates(masks, [0.9, 0.8, 0.7, 0.6], [0, 0, 1, 0], iou_threshold=0.5)
    assert dropped == [1]
    assert suppress_duplicates(masks, [0.9, 0.8, 0.7, 0.6], [0, 0, 1, 0], iou_threshold=0.0) == []


def test_resolve_overlaps_gives_pixels_to_the_best_of_a_group():
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[0, :, :3] = True
    masks[1, :, 1:] = True
    masks[2] = True                  # another group: untouched
    out = resolve_overlaps(masks, torch.tensor([0.4, 0.9, 0.1]), [0, 0, 1])
    assert out[1, :, 1:].all() and not out[0, :, 1:].any() and out[0, :, 0].all()
    assert out[2].all()
    assert not (out[0] & out[1]).any()
