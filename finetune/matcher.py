"""Assigning queries to ground-truth instances, per (image, phrase) pair.

One-to-one (Hungarian): the cost of giving query q to instance t is
``cost_class * focal(q) + cost_bbox * L1(q, t) + cost_giou * -GIoU(q, t)``, where ``focal`` is the
difference of the positive and negative sigmoid focal terms of the query's logit and L1 is taken on
normalised (cx, cy, w, h). Each instance gets exactly one query (when there are enough queries).

One-to-many (the auxiliary branch): a query's quality for an instance is ``alpha * p + (1 - alpha) * IoU``;
each instance takes its ``topk`` best queries whose quality is above ``threshold``, and a query goes to
at most one instance (its best).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment

from .boxes import pairwise_iou_giou, xyxy_to_cxcywh

Match = tuple[torch.Tensor, torch.Tensor]  # (query indices, target indices), both (K,) long


@dataclass(frozen=True)
class MatcherCosts:
    """Weights of the Hungarian cost (SAM 3's defaults)."""

    cost_class: float = 2.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    alpha: float = 0.25
    gamma: float = 2.0


@dataclass(frozen=True)
class OneToManyOptions:
    """SAM 3's defaults for the one-to-many matcher."""

    alpha: float = 0.3
    threshold: float = 0.4
    topk: int = 4


def match_cost(logits: torch.Tensor, boxes: torch.Tensor, target_boxes: torch.Tensor,
               costs: MatcherCosts = MatcherCosts()) -> torch.Tensor:
    """Cost matrix (Q, T) for queries ``logits`` (Q,), ``boxes`` (Q, 4 xyxy) and ``target_boxes`` (T, 4 xyxy)."""
    prob = logits.float().sigmoid()
    eps = 1e-8
    positive = costs.alpha * (1 - prob) ** costs.gamma * -(prob + eps).log()
    negative = (1 - costs.alpha) * prob ** costs.gamma * -(1 - prob + eps).log()
    class_cost = (positive - negative)[:, None]
    l1 = torch.cdist(xyxy_to_cxcywh(boxes.float()), xyxy_to_cxcywh(target_boxes.float()), p=1)
    _, giou = pairwise_iou_giou(boxes.float(), target_boxes.float())
    return costs.cost_class * class_cost + costs.cost_bbox * l1 - costs.cost_giou * giou


def _no_match(device: torch.device) -> Match:
    """The match of a pair without instances: no query, no target."""
    empty = torch.zeros(0, dtype=torch.long, device=device)
    return empty, empty


@torch.no_grad()
def hungarian_match(logits: torch.Tensor, boxes: torch.Tensor, targets: list[torch.Tensor],
                    costs: MatcherCosts = MatcherCosts()) -> list[Match]:
    """One-to-one matches for a batch of pairs.

    Args:
        logits: (P, Q) query logits.
        boxes: (P, Q, 4) predicted xyxy boxes.
        targets: P tensors of (T_p, 4) xyxy boxes (T_p may be 0).
    """
    matches = []
    for p, target in enumerate(targets):
        if len(target) == 0:
            matches.append(_no_match(logits.device))
            continue
        cost = match_cost(logits[p], boxes[p], target.to(boxes.device), costs)
        if not torch.isfinite(cost).all():
            raise FloatingPointError("the model's outputs are not finite (NaN/inf): the training diverged; "
                                     "lower --lr, or train in float32")
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        matches.append((torch.as_tensor(rows, dtype=torch.long, device=logits.device),
                        torch.as_tensor(cols, dtype=torch.long, device=logits.device)))
    return matches


@torch.no_grad()
def one_to_many_match(logits: torch.Tensor, boxes: torch.Tensor, targets: list[torch.Tensor],
                      options: OneToManyOptions = OneToManyOptions()) -> list[Match]:
    """Greedy one-to-many matches (several queries per instance, one instance per query); shapes as above."""
    matches = []
    for p, target in enumerate(targets):
        if len(target) == 0:
            matches.append(_no_match(logits.device))
            continue
        iou, _ = pairwise_iou_giou(boxes[p].float(), target.to(boxes.device).float())
        quality = options.alpha * logits[p].float().sigmoid()[:, None] + (1 - options.alpha) * iou  # (Q, T)
        k = min(options.topk, quality.shape[0])
        top = torch.zeros_like(quality, dtype=torch.bool)
        top.scatter_(0, quality.topk(k, dim=0).indices, True)
        chosen = top & (quality > options.threshold)
        # A query picked by several instances keeps only its best one.
        best = quality.masked_fill(~chosen, -1.0).argmax(dim=1)
        query_idx = chosen.any(dim=1).nonzero(as_tuple=True)[0]
        matches.append((query_idx, best[query_idx]))
    return matches
