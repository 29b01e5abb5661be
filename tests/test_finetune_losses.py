"""Each loss term of the SAM 3 objective against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from finetune.criterion import DetectorOutputs, LayerOutput, Sam3Criterion
from finetune.losses import (
    LossWeights,
    box_losses,
    dice_loss,
    ia_bce_loss,
    mask_losses,
    presence_loss,
    sigmoid_focal_loss,
)


def _bce(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_sigmoid_focal_loss_hand_computed():
    logit, p = 1.0, 1 / (1 + math.exp(-1.0))
    loss = sigmoid_focal_loss(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0]), alpha=0.25, gamma=2.0)
    assert loss[0].item() == pytest.approx(0.25 * (1 - p) ** 2 * _bce(logit, 1), rel=1e-5)
    assert loss[1].item() == pytest.approx(0.75 * p**2 * _bce(logit, 0), rel=1e-5)
    plain = sigmoid_focal_loss(torch.tensor([1.0]), torch.tensor([1.0]), alpha=-1, gamma=0.0)
    assert plain.item() == pytest.approx(_bce(logit, 1), rel=1e-5)


def test_ia_bce_hand_computed():
    # One pair, two queries; query 0 matched to a target it overlaps with IoU 0.5; query 1 unmatched.
    logits = torch.tensor([[0.0, 2.0]])
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]]])
    target = torch.tensor([[0.0, 0.0, 0.5, 1.0]])  # IoU with query 0: 0.25 / 0.5 = 0.5
    w = LossWeights()
    loss = ia_bce_loss(logits, boxes, [(torch.tensor([0]), torch.tensor([0]))], [target], w)
    t = 0.5**0.25 * 0.5**0.75
    p1 = 1 / (1 + math.exp(-2.0))
    expected = (w.pos_weight * _bce(0.0, t) + _bce(2.0, 0.0) * p1**2) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_ia_bce_is_zero_for_a_pair_without_targets():
    loss = ia_bce_loss(torch.tensor([[3.0, -1.0]]), torch.rand(1, 2, 4), [(torch.zeros(0, dtype=torch.long),) * 2],
                       [torch.zeros(0, 4)])
    assert loss.item() == 0.0


def test_box_losses_hand_computed():
    boxes = torch.tensor([[[0.1, 0.1, 0.3, 0.3], [0.0, 0.0, 1.0, 1.0]]])
    target = torch.tensor([[0.2, 0.1, 0.4, 0.3]])  # query 0 shifted right by 0.1
    l1, giou = box_losses(boxes, [(torch.tensor([0]), torch.tensor([0]))], [target], num_boxes=2.0)
    assert l1.item() == pytest.approx(0.1 / 2, abs=1e-6)  # only cx differs
    iou = 0.02 / 0.06
    expected_giou = iou - (0.3 * 0.2 - 0.06) / (0.3 * 0.2)
    assert giou.item() == pytest.approx((1 - expected_giou) / 2, abs=1e-5)


def test_presence_loss_is_half_bce_by_default():
    logits = torch.tensor([[1.5], [-0.5]])
    loss = presence_loss(logits, [torch.zeros(1, 4), torch.zeros(0, 4)])
    assert loss.item() == pytest.approx(0.5 * (_bce(1.5, 1) + _bce(-0.5, 0)) / 2, rel=1e-5)


def test_dice_loss_hand_computed():
    logits = torch.tensor([[20.0, 20.0, -20.0, -20.0]])  # predicts the first two points
    targets = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert dice_loss(logits, targets, 1.0).item() == pytest.approx(1 - (2 * 1 + 1) / (2 + 1 + 1), abs=1e-4)
    assert dice_loss(logits, torch.tensor([[1.0, 1.0, 0.0, 0.0]]), 1.0).item() == pytest.approx(0.0, abs=1e-4)


def test_mask_losses_prefer_the_right_mask():
    torch.manual_seed(0)
    gt = torch.zeros(1, 32, 32, dtype=torch.bool)
    gt[0, 8:24, 8:24] = True
    right = torch.where(gt, 8.0, -8.0)[None]  # (P=1, Q=1, 32, 32) logits, at the GT's resolution
    wrong = torch.where(gt.flip(-1).roll(10, -1), 8.0, -8.0)[None]
    match = [(torch.tensor([0]), torch.tensor([0]))]
    good = mask_losses(right, match, [gt], 1.0)
    bad = mask_losses(wrong, match, [gt], 1.0)
    assert good[0] < 0.01 and good[1] < 0.1  # points on the edge are sampled bilinearly: p ~ 0.5 there
    assert bad[0] > 10 * good[0] and bad[1] > 5 * good[1]


def test_criterion_sums_weighted_terms_and_learns_toward_targets():
    torch.manual_seed(0)
    logits = torch.zeros(2, 4, requires_grad=True)
    raw = torch.rand(2, 4, 4)
    boxes = torch.cat([raw[..., :2] * 0.5, raw[..., :2] * 0.5 + 0.3], -1).requires_grad_(True)
    masks = torch.zeros(2, 4, 16, 16, requires_grad=True)
    presence = torch.zeros(2, 1, requires_grad=True)
    gt_masks = torch.zeros(1, 16, 16, dtype=torch.bool)
    gt_masks[0, 4:10, 4:10] = True
    targets = [{"boxes": torch.tensor([[0.25, 0.25, 0.625, 0.625]]), "masks": gt_masks},
               {"boxes": torch.zeros(0, 4), "masks": torch.zeros(0, 16, 16, dtype=torch.bool)}]
    layer = LayerOutput(logits, boxes, masks, presence)
    outputs = DetectorOutputs(final=layer, aux=[LayerOutput(logits, boxes)], o2m=[LayerOutput(logits, boxes)])
    total, parts = Sam3Criterion()(outputs, targets)
    assert total.item() == pytest.approx(sum(parts.values()), rel=1e-4)
    assert parts["loss_ce"] == pytest.approx(parts["loss_ce_aux0"], rel=1e-5)
    assert set(parts) >= {"loss_ce", "loss_bbox", "loss_giou", "presence", "loss_mask", "loss_dice", "loss_ce_o2m0"}
    total.backward()
    assert presence.grad[0, 0] < 0 < presence.grad[1, 0]  # raise presence where the phrase is, lower elsewhere


def test_one_to_many_last_layer_gets_mask_terms_at_twice_the_weight():
    # One target and two queries: query 0 sits on it with a high score, query 1 far off with a low one, so the
    # Hungarian and the one-to-many matchers both pick query 0 alone. With a full ground-truth mask and constant
    # mask logits the sampled points hardly matter (only those within half a pixel of the border, which bilinear
    # sampling fades), so the o2m mask terms are o2m (2) x the o2o ones up to that.
    logits = torch.tensor([[3.0, -3.0]])
    boxes = torch.tensor([[[0.2, 0.2, 0.6, 0.6], [0.7, 0.7, 0.9, 0.9]]])
    masks = torch.full((1, 2, 128, 128), 0.5)
    targets = [{"boxes": torch.tensor([[0.2, 0.2, 0.6, 0.6]]), "masks": torch.ones(1, 128, 128, dtype=torch.bool)}]
    final = LayerOutput(logits, boxes, masks, torch.zeros(1, 1))
    outputs = DetectorOutputs(final=final, o2m=[LayerOutput(logits, boxes), LayerOutput(logits, boxes, masks)])
    _, parts = Sam3Criterion()(outputs, targets)
    assert "loss_mask_o2m0" not in parts  # earlier o2m layers: class and box terms only
    assert parts["loss_mask_o2m1"] == pytest.approx(2 * parts["loss_mask"], rel=0.02)
    assert parts["loss_dice_o2m1"] == pytest.approx(2 * parts["loss_dice"], rel=0.02)
    assert parts["loss_ce_o2m1"] == pytest.approx(2 * parts["loss_ce"], rel=1e-5)
    assert not any(k.startswith("presence") and "o2m" in k for k in parts)  # no presence term on o2m


def test_semantic_losses_hand_computed():
    from finetune.losses import semantic_losses

    gt = torch.zeros(1, 8, 8, dtype=torch.bool)
    gt[0, :4] = True  # top half; at 4x4 the target is exactly the top two rows
    logits = torch.full((2, 1, 4, 4), -20.0)
    logits[0, 0, :2] = 20.0  # pair 0 predicts its union exactly; pair 1 (negative) predicts nothing
    focal, dice = semantic_losses(logits, [gt, torch.zeros(0, 8, 8, dtype=torch.bool)])
    assert focal.item() == pytest.approx(0.0, abs=1e-6)
    # Dice: pair 0 is perfect (0); pair 1 has no target and no prediction: 1 - 1 / 1 = 0.
    assert dice.item() == pytest.approx(0.0, abs=1e-4)
    logits[1, 0] = 20.0  # the negative pair now fires everywhere: dice 1 - 1 / 17, focal > 0
    focal, dice = semantic_losses(logits, [gt, torch.zeros(0, 8, 8, dtype=torch.bool)])
    assert dice.item() == pytest.approx((1 - 1 / 17) / 2, abs=1e-4)
    assert focal.item() == pytest.approx(0.4 * 20 / 2, rel=1e-3)  # (1 - alpha) * BCE(20, 0) over half the pixels
