"""transformers' ``Sam3Model`` wrapped for training: features once per image, outputs of every decoder
layer, the one-to-many branch, and the loss.

``Sam3Model.forward`` returns only the last decoder layer and no loss. The earlier layers' hidden states
and reference boxes are produced anyway, so a forward hook on the DETR decoder keeps them, and the
model's own box head and scoring module turn them into per-layer boxes and logits. The one-to-many
branch is SAM 3's (DAC-DETR): the same queries run a second time in the same pass without
self-attention (:mod:`finetune.dac`); it adds no parameters, so the exported model is the plain one.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput, box_cxcywh_to_xyxy, inverse_sigmoid

from .criterion import DetectorOutputs, LayerOutput, Sam3Criterion
from .dac import duplicated_queries


def base_sam3(model: nn.Module) -> nn.Module:
    """The ``Sam3Model`` under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def expand_vision(vision: Sam3VisionEncoderOutput, index: torch.Tensor) -> Sam3VisionEncoderOutput:
    """Vision features of N images repeated for P pairs (``index`` (P,) picks each pair's image)."""
    def pick(value):
        if value is None:
            return None
        if isinstance(value, tuple):
            return tuple(v[index] for v in value)
        return value[index]

    return Sam3VisionEncoderOutput(last_hidden_state=pick(vision.last_hidden_state),
                                   fpn_hidden_states=pick(vision.fpn_hidden_states),
                                   fpn_position_encoding=pick(vision.fpn_position_encoding))


class Sam3ForTraining(nn.Module):
    """``forward(**batch)`` (a :class:`finetune.pairs.PairCollator` batch) returns ``{"loss", **parts}``."""

    def __init__(self, sam3: nn.Module, criterion: Sam3Criterion | None = None, one_to_many: bool = False):
        super().__init__()
        self.sam3 = sam3
        self.criterion = criterion or Sam3Criterion()
        self.one_to_many = one_to_many

    def detector_outputs(self, pixel_values: torch.Tensor, image_index: torch.Tensor, input_ids: torch.Tensor,
                         attention_mask: torch.Tensor, input_boxes: torch.Tensor | None = None,
                         input_boxes_labels: torch.Tensor | None = None) -> DetectorOutputs:
        """Run the model on every pair and collect all layers' predictions (shapes in :class:`LayerOutput`).

        With the one-to-many branch on (in training mode only), one forward carries both query sets; the
        first ``Q`` of every output are the one-to-one queries, exactly what inference computes.
        """
        model = base_sam3(self.sam3)
        vision = expand_vision(model.get_vision_features(pixel_values), image_index)
        captured: dict = {}

        def keep(_module, _args, kwargs, output):
            captured["kwargs"], captured["output"] = kwargs, output

        dac = self.one_to_many and self.training
        handle = model.detr_decoder.register_forward_hook(keep, with_kwargs=True)
        try:
            with duplicated_queries(model.detr_decoder) if dac else contextlib.nullcontext():
                out = self.sam3(vision_embeds=vision, input_ids=input_ids, attention_mask=attention_mask,
                                input_boxes=input_boxes, input_boxes_labels=input_boxes_labels)
        finally:
            handle.remove()
        layers = self._layers(model, captured["output"], captured["kwargs"])
        q = model.detr_decoder.query_embed.weight.shape[0]
        o2o = slice(0, q)
        final = LayerOutput(out.pred_logits[:, o2o], out.pred_boxes[:, o2o], out.pred_masks[:, o2o],
                            out.presence_logits, out.semantic_seg)
        aux = [LayerOutput(layer.logits[:, o2o], layer.boxes[:, o2o]) for layer in layers[:-1]]
        o2m = []
        if dac:
            o2m = [LayerOutput(layer.logits[:, q:], layer.boxes[:, q:]) for layer in layers[:-1]]
            # SAM 3 predicts (and supervises) masks for the last layer's o2m queries too.
            o2m.append(LayerOutput(out.pred_logits[:, q:], out.pred_boxes[:, q:], out.pred_masks[:, q:]))
        return DetectorOutputs(final=final, aux=aux, o2m=o2m)

    @staticmethod
    def _layers(model: nn.Module, decoded, kwargs: dict) -> list[LayerOutput]:
        hidden = decoded.intermediate_hidden_states  # (L, P, Q, H)
        offsets = model.detr_decoder.box_head(hidden)
        boxes = box_cxcywh_to_xyxy((inverse_sigmoid(decoded.reference_boxes) + offsets).sigmoid())
        logits = model.dot_product_scoring(decoder_hidden_states=hidden, text_features=kwargs["text_features"],
                                           text_mask=kwargs.get("text_mask")).squeeze(-1)
        return [LayerOutput(logits[i], boxes[i]) for i in range(hidden.shape[0])]

    def forward(self, pixel_values: torch.Tensor, image_index: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor, targets: list[dict], input_boxes: torch.Tensor | None = None,
                input_boxes_labels: torch.Tensor | None = None) -> dict:
        outputs = self.detector_outputs(pixel_values, image_index, input_ids, attention_mask, input_boxes,
                                        input_boxes_labels)
        loss, parts = self.criterion(outputs, targets)
        return {"loss": loss, "parts": parts}
