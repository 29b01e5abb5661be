"""transformers' ``Sam3Model`` wrapped for training: features once per image, outputs of every decoder
layer, an optional one-to-many query set, and the loss.

``Sam3Model.forward`` returns only the last decoder layer and no loss. The earlier layers' hidden states
and reference boxes are produced anyway, so a forward hook on the DETR decoder keeps them, and the
model's own box head and scoring module turn them into per-layer boxes and logits. The one-to-many
branch is a second, training-only set of queries (initialised from the model's) run through the same
decoder; it trains the decoder with denser supervision and is dropped at export, because the released
inference graph has only the one-to-one queries.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn
from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput, box_cxcywh_to_xyxy, inverse_sigmoid

from .criterion import DetectorOutputs, LayerOutput, Sam3Criterion


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

    def __init__(self, sam3: nn.Module, criterion: Sam3Criterion | None = None, one_to_many: bool = True):
        super().__init__()
        self.sam3 = sam3
        self.criterion = criterion or Sam3Criterion()
        decoder = base_sam3(sam3).detr_decoder
        self.o2m_queries = copy.deepcopy(decoder.query_embed) if one_to_many else None
        self.o2m_reference = copy.deepcopy(decoder.reference_points) if one_to_many else None

    def detector_outputs(self, pixel_values: torch.Tensor, image_index: torch.Tensor, input_ids: torch.Tensor,
                         attention_mask: torch.Tensor, input_boxes: torch.Tensor | None = None,
                         input_boxes_labels: torch.Tensor | None = None) -> DetectorOutputs:
        """Run the model on every pair and collect all layers' predictions (shapes in :class:`LayerOutput`)."""
        model = base_sam3(self.sam3)
        vision = expand_vision(model.get_vision_features(pixel_values), image_index)
        captured: dict = {}

        def keep(_module, _args, kwargs, output):
            captured["kwargs"], captured["output"] = kwargs, output

        handle = model.detr_decoder.register_forward_hook(keep, with_kwargs=True)
        try:
            out = self.sam3(vision_embeds=vision, input_ids=input_ids, attention_mask=attention_mask,
                            input_boxes=input_boxes, input_boxes_labels=input_boxes_labels)
        finally:
            handle.remove()
        layers = self._layers(model, captured["output"], captured["kwargs"])
        final = LayerOutput(out.pred_logits, out.pred_boxes, out.pred_masks, out.presence_logits, out.semantic_seg)
        o2m = []
        if self.o2m_queries is not None:
            with self._swapped_queries(model.detr_decoder):
                o2m = self._layers(model, model.detr_decoder(**captured["kwargs"]), captured["kwargs"])
        return DetectorOutputs(final=final, aux=layers[:-1], o2m=o2m)

    @staticmethod
    def _layers(model: nn.Module, decoded, kwargs: dict) -> list[LayerOutput]:
        hidden = decoded.intermediate_hidden_states  # (L, P, Q, H)
        offsets = model.detr_decoder.box_head(hidden)
        boxes = box_cxcywh_to_xyxy((inverse_sigmoid(decoded.reference_boxes) + offsets).sigmoid())
        logits = model.dot_product_scoring(decoder_hidden_states=hidden, text_features=kwargs["text_features"],
                                           text_mask=kwargs.get("text_mask")).squeeze(-1)
        return [LayerOutput(logits[i], boxes[i]) for i in range(hidden.shape[0])]

    @contextlib.contextmanager
    def _swapped_queries(self, decoder: nn.Module):
        original = decoder.query_embed, decoder.reference_points
        decoder.query_embed, decoder.reference_points = self.o2m_queries, self.o2m_reference
        try:
            yield
        finally:
            decoder.query_embed, decoder.reference_points = original

    def forward(self, pixel_values: torch.Tensor, image_index: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor, targets: list[dict], input_boxes: torch.Tensor | None = None,
                input_boxes_labels: torch.Tensor | None = None) -> dict:
        outputs = self.detector_outputs(pixel_values, image_index, input_ids, attention_mask, input_boxes,
                                        input_boxes_labels)
        loss, parts = self.criterion(outputs, targets)
        return {"loss": loss, "parts": parts}
