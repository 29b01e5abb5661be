"""The whole SAM 3 training objective over one forward pass: final layer, auxiliary layers, one-to-many."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .losses import LossWeights, box_losses, ia_bce_loss, mask_losses, presence_loss, semantic_losses
from .matcher import MatcherCosts, OneToManyOptions, hungarian_match, one_to_many_match


@dataclass
class LayerOutput:
    """Predictions of one decoder layer: ``logits`` (P, Q), ``boxes`` (P, Q, 4 xyxy), optional ``masks``
    (P, Q, h, w), ``presence`` (P, 1) logits and ``semantic`` (P, 1, h, w) logits."""

    logits: torch.Tensor
    boxes: torch.Tensor
    masks: torch.Tensor | None = None
    presence: torch.Tensor | None = None
    semantic: torch.Tensor | None = None


@dataclass
class DetectorOutputs:
    """``final``: the last decoder layer (with masks and presence); ``aux``: the earlier layers;
    ``o2m``: every layer of the one-to-many queries (last one final, with masks), empty when the branch is off."""

    final: LayerOutput
    aux: list[LayerOutput] = field(default_factory=list)
    o2m: list[LayerOutput] = field(default_factory=list)


@dataclass(frozen=True)
class Sam3Criterion:
    """Weighted sum of the SAM 3 detection losses.

    Terms (weights in :class:`LossWeights`): on the final layer IA-BCE, L1, GIoU, presence, mask focal and
    dice with Hungarian matches, and the dense semantic head's focal and dice; on each earlier decoder
    layer IA-BCE, L1 and GIoU with its own Hungarian matches; on the one-to-many queries the same class
    and box terms, and on their last layer the mask terms, times ``o2m`` (the last layer matched
    one-to-many, the earlier ones one-to-one, as SAM 3's recipe does with ``use_o2m_matcher_on_o2m_aux``
    off). Like SAM 3, the o2m terms are normalised by the number of ground-truth instances (not of o2m
    positives) and have no presence term: the presence token is shared and answered for by the o2o pass.
    """

    weights: LossWeights = field(default_factory=LossWeights)
    costs: MatcherCosts = field(default_factory=MatcherCosts)
    o2m_options: OneToManyOptions = field(default_factory=OneToManyOptions)

    def __call__(self, outputs: DetectorOutputs, targets: list[dict]) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its parts (floats, for logging). ``targets``: per pair ``boxes`` (T, 4 xyxy) and
        ``masks`` (T, H, W)."""
        boxes = [t["boxes"].to(outputs.final.boxes.device) for t in targets]
        masks = [t["masks"] for t in targets]
        num_boxes = float(max(sum(len(b) for b in boxes), 1))
        w = self.weights
        parts: dict[str, torch.Tensor] = {}
        final = outputs.final
        matches = hungarian_match(final.logits, final.boxes, boxes, self.costs)
        parts.update(self._class_and_box(final, matches, boxes, num_boxes, ""))
        parts["presence"] = w.presence * presence_loss(final.presence, boxes, w)
        if final.masks is not None:
            focal, dice = mask_losses(final.masks, matches, masks, num_boxes, w)
            parts["loss_mask"], parts["loss_dice"] = w.loss_mask * focal, w.loss_dice * dice
        if final.semantic is not None and w.semantic_seg + w.semantic_dice > 0:
            focal, dice = semantic_losses(final.semantic, masks, w)
            parts["semantic_seg"], parts["semantic_dice"] = w.semantic_seg * focal, w.semantic_dice * dice
        for i, layer in enumerate(outputs.aux):
            aux_matches = hungarian_match(layer.logits, layer.boxes, boxes, self.costs)
            parts.update(self._class_and_box(layer, aux_matches, boxes, num_boxes, f"_aux{i}"))
        for i, layer in enumerate(outputs.o2m):
            last = i == len(outputs.o2m) - 1
            o2m_matches = (one_to_many_match(layer.logits, layer.boxes, boxes, self.o2m_options) if last
                           else hungarian_match(layer.logits, layer.boxes, boxes, self.costs))
            o2m_parts = self._class_and_box(layer, o2m_matches, boxes, num_boxes, f"_o2m{i}")
            if layer.masks is not None:
                focal, dice = mask_losses(layer.masks, o2m_matches, masks, num_boxes, w)
                o2m_parts[f"loss_mask_o2m{i}"], o2m_parts[f"loss_dice_o2m{i}"] = w.loss_mask * focal, w.loss_dice * dice
            parts.update({key: w.o2m * value for key, value in o2m_parts.items()})
        total = sum(parts.values())
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def _class_and_box(self, layer: LayerOutput, matches, boxes, num_boxes: float, suffix: str) -> dict:
        w = self.weights
        l1, giou = box_losses(layer.boxes, matches, boxes, num_boxes)
        return {f"loss_ce{suffix}": w.loss_ce * ia_bce_loss(layer.logits, layer.boxes, matches, boxes, w),
                f"loss_bbox{suffix}": w.loss_bbox * l1, f"loss_giou{suffix}": w.loss_giou * giou}
