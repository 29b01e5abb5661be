"""The SAM 3 detection objective, term by term, on matched queries.

Conventions: ``P`` (image, phrase) pairs, ``Q`` queries, boxes normalised xyxy, ``matches`` from
:mod:`finetune.matcher` (per pair, query indices and target indices), and ``num_boxes`` the number of
ground-truth instances in the whole batch (at least 1), which normalises the box and mask sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .boxes import paired_iou_giou, xyxy_to_cxcywh
from .matcher import Match


@dataclass(frozen=True)
class LossWeights:
    """Weights and shapes of the objective; the defaults are SAM 3's published ones."""

    loss_bbox: float = 5.0
    loss_giou: float = 2.0
    loss_ce: float = 20.0
    presence: float = 20.0
    pos_weight: float = 10.0
    loss_mask: float = 200.0
    loss_dice: float = 10.0
    o2m: float = 2.0
    semantic_seg: float = 20.0  # SAM 3's segmentation recipe also supervises the dense semantic head
    semantic_dice: float = 30.0
    semantic_alpha: float = 0.6
    ia_alpha: float = 0.25  # how much the positive target leans on the score rather than the IoU
    ia_gamma: float = 2.0  # focal down-weighting of easy negatives
    mask_alpha: float = 0.25
    mask_gamma: float = 2.0
    presence_alpha: float = 0.5
    presence_gamma: float = 0.0
    num_points: int = 1024  # mask loss points per matched query
    oversample: float = 3.0
    importance: float = 0.75  # share of the points put where the prediction is least certain


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Element-wise focal loss: ``alpha_t * (1 - p_t) ** gamma * BCE`` (alpha < 0 disables alpha weighting)."""
    prob = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = bce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


def _gather(matches: list[Match], targets: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat (pair, query) indices of matched predictions and the matched target rows, concatenated."""
    pair = torch.cat([torch.full_like(q, p) for p, (q, _) in enumerate(matches)])
    query = torch.cat([q for q, _ in matches])
    rows = torch.cat([t[j] for (_, j), t in zip(matches, targets)]) if matches else torch.zeros(0, 4)
    return pair, query, rows


def ia_bce_loss(logits: torch.Tensor, boxes: torch.Tensor, matches: list[Match], target_boxes: list[torch.Tensor],
                weights: LossWeights = LossWeights()) -> torch.Tensor:
    """IoU-aware BCE over all queries (mean), as SAM 3 trains its scores.

    A matched query's target is ``p ** alpha * IoU ** (1 - alpha)`` (at least 0.01, no gradient), weighted by
    ``pos_weight``; unmatched queries get BCE towards 0 scaled by ``p ** gamma``. Pairs with no
    ground truth get no classification loss at all: the presence head answers for them.

    Args:
        logits: (P, Q); boxes: (P, Q, 4) xyxy; matches and target_boxes per pair.
    """
    prob = logits.sigmoid()
    pair, query, rows = _gather(matches, target_boxes)
    positive = torch.zeros_like(logits)
    soft = torch.zeros_like(logits)
    if len(pair):
        positive[pair, query] = 1.0
        with torch.no_grad():
            iou, _ = paired_iou_giou(boxes[pair, query].float(), rows.to(boxes.device).float())
            t = (prob[pair, query].detach() ** weights.ia_alpha * iou ** (1 - weights.ia_alpha)).clamp(min=0.01)
        soft[pair, query] = t.to(soft.dtype)
    loss_pos = F.binary_cross_entropy_with_logits(logits, soft, reduction="none") * positive * weights.pos_weight
    loss_neg = F.binary_cross_entropy_with_logits(logits, positive, reduction="none") * (1 - positive) \
        * prob.detach() ** weights.ia_gamma
    has_target = torch.tensor([len(t) > 0 for t in target_boxes], device=logits.device, dtype=logits.dtype)
    return ((loss_pos + loss_neg) * has_target[:, None]).mean()


def box_losses(boxes: torch.Tensor, matches: list[Match], target_boxes: list[torch.Tensor],
               num_boxes: float) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 on normalised (cx, cy, w, h) and ``1 - GIoU``, summed over matches and divided by ``num_boxes``."""
    pair, query, rows = _gather(matches, target_boxes)
    if not len(pair):
        zero = boxes.sum() * 0.0
        return zero, zero
    pred, rows = boxes[pair, query].float(), rows.to(boxes.device).float()
    l1 = F.l1_loss(xyxy_to_cxcywh(pred), xyxy_to_cxcywh(rows), reduction="none").sum() / num_boxes
    _, giou = paired_iou_giou(pred, rows)
    return l1, (1 - giou).sum() / num_boxes


def presence_loss(presence_logits: torch.Tensor, target_boxes: list[torch.Tensor],
                  weights: LossWeights = LossWeights()) -> torch.Tensor:
    """Focal/BCE of the image-level presence logit (P,) or (P, 1) against "the phrase has an instance", mean."""
    present = torch.tensor([float(len(t) > 0) for t in target_boxes], device=presence_logits.device)
    return sigmoid_focal_loss(presence_logits.reshape(-1).float(), present, weights.presence_alpha,
                              weights.presence_gamma).mean()


def sample_points(mask_logits: torch.Tensor, weights: LossWeights = LossWeights()) -> torch.Tensor:
    """Point coordinates (N, K, 2) in [0, 1] (x, y): mostly where ``mask_logits`` (N, h, w) is near 0, some uniform."""
    n, k = mask_logits.shape[0], weights.num_points
    candidates = torch.rand(n, int(k * weights.oversample), 2, device=mask_logits.device)
    with torch.no_grad():
        uncertainty = -_point_sample(mask_logits.detach(), candidates).abs()
    n_important = int(k * weights.importance)
    top = uncertainty.topk(n_important, dim=1).indices
    important = torch.gather(candidates, 1, top[..., None].expand(-1, -1, 2))
    uniform = torch.rand(n, k - n_important, 2, device=mask_logits.device)
    return torch.cat([important, uniform], dim=1)


def _point_sample(maps: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear values of ``maps`` (N, H, W) at ``points`` (N, K, 2) in [0, 1]: (N, K)."""
    grid = (points * 2 - 1)[:, :, None, :]
    return F.grid_sample(maps[:, None].float(), grid, align_corners=False)[:, 0, :, 0]


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_boxes: float) -> torch.Tensor:
    """``1 - (2|P∩T| + 1) / (|P| + |T| + 1)`` per row of (N, K) point logits/targets, summed, / ``num_boxes``."""
    prob = logits.sigmoid()
    numerator = 2 * (prob * targets).sum(-1)
    denominator = prob.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_boxes


def mask_losses(mask_logits: torch.Tensor, matches: list[Match], target_masks: list[torch.Tensor],
                num_boxes: float, weights: LossWeights = LossWeights()) -> tuple[torch.Tensor, torch.Tensor]:
    """Focal and dice mask losses on sampled points.

    Args:
        mask_logits: (P, Q, h, w) predicted mask logits (any resolution; sampled bilinearly).
        target_masks: per pair (T_p, H, W) bool ground truth (any resolution).

    Returns:
        (focal summed over points' mean per match / num_boxes, dice / num_boxes).
    """
    pair = torch.cat([torch.full_like(q, p) for p, (q, _) in enumerate(matches)])
    if not len(pair):
        zero = mask_logits.sum() * 0.0
        return zero, zero
    query = torch.cat([q for q, _ in matches])
    gt = torch.cat([m[j] for (_, j), m in zip(matches, target_masks)]).to(mask_logits.device).float()
    pred = mask_logits[pair, query]
    points = sample_points(pred, weights)
    pred_points = _point_sample(pred, points)
    gt_points = (_point_sample(gt, points) > 0.5).float()
    focal = sigmoid_focal_loss(pred_points, gt_points, weights.mask_alpha, weights.mask_gamma).mean(1).sum() / num_boxes
    return focal, dice_loss(pred_points, gt_points, num_boxes)


def semantic_losses(seg_logits: torch.Tensor, target_masks: list[torch.Tensor],
                    weights: LossWeights = LossWeights()) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense losses of the semantic head: focal (mean over pixels) and dice (mean over pairs).

    Args:
        seg_logits: (P, 1, h, w) logits of "this pixel belongs to the phrase".
        target_masks: per pair (T_p, H, W) bool instances; their union, area-resized to (h, w), is the target
            (all zeros for a negative pair).
    """
    size = seg_logits.shape[-2:]
    unions = []
    for masks in target_masks:
        union = masks.any(0, keepdim=True).float() if len(masks) else torch.zeros(1, *masks.shape[-2:])
        unions.append(F.interpolate(union[None].to(seg_logits.device), size=size, mode="area")[0])
    target = torch.stack(unions)  # (P, 1, h, w), soft at object borders
    logits = seg_logits.float()
    focal = sigmoid_focal_loss(logits, target, weights.semantic_alpha, weights.mask_gamma).mean()
    flat_logits, flat_target = logits.flatten(1), target.flatten(1)
    return focal, dice_loss(flat_logits, flat_target, float(len(target_masks)))
