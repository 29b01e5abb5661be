"""The SAM 2 / SAM 3 tracker objective for one predicted object: focal + dice on the mask, MSE on the
predicted IoU, BCE on the "object is visible" score; with several candidate masks only the best one (lowest
mask loss) is trained, while every candidate's IoU prediction is.

Weights as published for SAM 2's training: focal 20, dice 1, IoU 1, object score 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from finetune.losses import sigmoid_focal_loss


@dataclass(frozen=True)
class TrackerLossWeights:
    focal: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    object_score: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0


def _dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-mask dice loss; (..., P) logits and targets -> (...)."""
    prob = logits.sigmoid()
    return 1 - (2 * (prob * targets).sum(-1) + 1) / (prob.sum(-1) + targets.sum(-1) + 1)


def tracker_loss(mask_logits: torch.Tensor, iou_pred: torch.Tensor, score_logits: torch.Tensor,
                 targets: torch.Tensor, weights: TrackerLossWeights | None = None) -> torch.Tensor:
    """Mean loss over ``N`` predicted objects.

    Args:
        mask_logits: ``(N, K, h, w)`` low-resolution logits of ``K`` candidate masks (upsampled here to the
            targets' size).
        iou_pred: ``(N, K)`` the decoder's predicted IoU of each candidate.
        score_logits: ``(N,)`` object-visible logits.
        targets: ``(N, H, W)`` bool ground truth; an empty target trains only the visible score (as SAM 2 does).
    """
    weights = weights or TrackerLossWeights()
    n, k = mask_logits.shape[:2]
    size = targets.shape[-2:]
    logits = F.interpolate(mask_logits.float(), size=size, mode="bilinear", align_corners=False).flatten(2)
    truth = targets.float().flatten(1)[:, None].expand(-1, k, -1)
    focal = sigmoid_focal_loss(logits, truth, weights.focal_alpha, weights.focal_gamma).mean(-1)
    per_mask = weights.focal * focal + weights.dice * _dice(logits, truth)  # (N, K)
    best = per_mask.min(dim=1).values
    with torch.no_grad():
        pred = logits > 0
        inter = (pred & (truth > 0)).sum(-1).float()
        union = (pred | (truth > 0)).sum(-1).float()
        actual_iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    iou = F.mse_loss(iou_pred.float(), actual_iou, reduction="none").mean(-1)
    visible = targets.flatten(1).any(-1).float()
    score = F.binary_cross_entropy_with_logits(score_logits.float(), visible, reduction="none")
    total = visible * (best + weights.iou * iou) + weights.object_score * score
    return total.sum() / max(n, 1)
