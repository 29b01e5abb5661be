"""The query-to-instance matchers against hand-computed cases and an exhaustive search."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from finetune.boxes import pairwise_iou_giou
from finetune.matcher import MatcherCosts, OneToManyOptions, hungarian_match, match_cost, one_to_many_match


def test_match_cost_hand_computed():
    # One query, logit 0 (p = 0.5), box equal to the target: L1 = 0, GIoU = 1.
    box = torch.tensor([[0.1, 0.1, 0.5, 0.5]])
    cost = match_cost(torch.tensor([0.0]), box, box, MatcherCosts())
    positive = 0.25 * 0.5**2 * math.log(2)
    negative = 0.75 * 0.5**2 * math.log(2)
    assert cost.item() == pytest.approx(2.0 * (positive - negative) - 2.0, abs=1e-5)
    # Shifting the box by 0.1 in x adds 5 * 0.1 to the L1 cost (cx moves, w does not) and lowers GIoU.
    shifted = box + torch.tensor([[0.1, 0.0, 0.1, 0.0]])
    iou = (0.3 * 0.4) / (0.4 * 0.4 * 2 - 0.3 * 0.4)
    hull = 0.5 * 0.4
    giou = iou - (hull - (0.4 * 0.4 * 2 - 0.3 * 0.4)) / hull
    cost2 = match_cost(torch.tensor([0.0]), shifted, box, MatcherCosts())
    assert cost2.item() == pytest.approx(2.0 * (positive - negative) + 5 * 0.1 - 2.0 * giou, abs=1e-5)


def test_giou_of_disjoint_boxes_is_negative():
    a, b = torch.tensor([[0.0, 0.0, 0.1, 0.1]]), torch.tensor([[0.9, 0.9, 1.0, 1.0]])
    iou, giou = pairwise_iou_giou(a, b)
    assert iou.item() == 0.0 and giou.item() == pytest.approx(0.02 / 1.0 - 1.0, abs=1e-5)


def _brute_force(cost: np.ndarray) -> float:
    q, t = cost.shape
    return min(sum(cost[r, c] for r, c in zip(rows, range(t))) for rows in itertools.permutations(range(q), t))


@pytest.mark.parametrize("seed", range(5))
def test_hungarian_is_optimal_and_one_to_one(seed):
    gen = torch.Generator().manual_seed(seed)
    queries, targets = 6, 3
    logits = torch.randn(1, queries, generator=gen)
    centers = torch.rand(1, queries, 2, generator=gen) * 0.6 + 0.2
    boxes = torch.cat([centers - 0.1, centers + 0.1], -1)
    t_centers = torch.rand(targets, 2, generator=gen) * 0.6 + 0.2
    target = torch.cat([t_centers - 0.15, t_centers + 0.05], -1)
    (rows, cols), = hungarian_match(logits, boxes, [target])
    assert sorted(cols.tolist()) == [0, 1, 2] and len(set(rows.tolist())) == 3
    cost = match_cost(logits[0], boxes[0], target).numpy()
    assert cost[rows.numpy(), cols.numpy()].sum() == pytest.approx(_brute_force(cost), abs=1e-5)


def test_hungarian_against_scipy():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(2, 20, generator=gen)
    xy = torch.rand(2, 20, 2, generator=gen) * 0.5
    boxes = torch.cat([xy, xy + 0.3], -1)
    targets = [torch.tensor([[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.8]]), torch.zeros(0, 4)]
    matches = hungarian_match(logits, boxes, targets)
    rows, cols = scipy_optimize.linear_sum_assignment(match_cost(logits[0], boxes[0], targets[0]).numpy())
    assert matches[0][0].tolist() == rows.tolist() and matches[0][1].tolist() == cols.tolist()
    assert len(matches[1][0]) == 0  # a negative pair has no match


def test_one_to_many_takes_several_good_queries_and_no_bad_one():
    target = torch.tensor([[0.2, 0.2, 0.6, 0.6]])
    boxes = torch.tensor([[[0.2, 0.2, 0.6, 0.6], [0.21, 0.2, 0.6, 0.6], [0.2, 0.2, 0.62, 0.6],
                           [0.8, 0.8, 0.9, 0.9], [0.2, 0.2, 0.6, 0.61]]])
    logits = torch.tensor([[2.0, 2.0, 2.0, 5.0, -6.0]])
    (rows, cols), = one_to_many_match(logits, boxes, [target], OneToManyOptions(alpha=0.3, threshold=0.4, topk=4))
    # Queries 0-2: high score and IoU. 3: far away (quality 0.3 * p < 0.4). 4: IoU ~1, p ~0 -> 0.7 > 0.4, kept.
    assert sorted(rows.tolist()) == [0, 1, 2, 4] and cols.tolist() == [0, 0, 0, 0]


def test_one_to_many_gives_each_query_one_target():
    targets = torch.tensor([[0.2, 0.2, 0.6, 0.6], [0.25, 0.2, 0.65, 0.6]])
    boxes = torch.tensor([[[0.2, 0.2, 0.6, 0.6], [0.25, 0.2, 0.65, 0.6]]])
    (rows, cols), = one_to_many_match(torch.zeros(1, 2), boxes, [targets], OneToManyOptions(topk=2))
    assert sorted(rows.tolist()) == [0, 1] and dict(zip(rows.tolist(), cols.tolist())) == {0: 0, 1: 1}


def test_non_finite_predictions_get_a_clear_error():
    with pytest.raises(FloatingPointError, match="not finite"):
        hungarian_match(torch.tensor([[float("nan"), 0.0]]), torch.rand(1, 2, 4),
                        [torch.tensor([[0.1, 0.1, 0.5, 0.5]])])
