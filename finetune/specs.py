"""Model shapes for training from scratch on a CPU, and writing such a random starting checkpoint.

The demo model is a detector-only SAM 3 (``model_type = "sam3"``): ``Sam3Engine.from_pretrained``
loads it like any image checkpoint. Its shape is chosen to learn the synthetic task in tens of minutes
on two CPU cores and to stay a few MB on disk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

PATCH = 14


@dataclass(frozen=True)
class DetectorSpec:
    """Shape of a small SAM 3 detector. ``image_size`` must be a multiple of the 14 px patch."""

    image_size: int = 112
    hidden: int = 64
    vit_hidden: int = 96
    vit_layers: int = 4
    vit_heads: int = 4
    vit_mlp: int = 192
    heads: int = 4
    mlp: int = 128
    text_layers: int = 2
    num_queries: int = 16
    decoder_layers: int = 2


DEMO_SPEC = DetectorSpec()


def detector_config(spec: DetectorSpec = DEMO_SPEC):
    """A ``Sam3Config`` of the given shape (byte-level text vocabulary of 514 tokens, 32 text positions)."""
    from transformers import Sam3Config

    img, h = spec.image_size, spec.hidden
    if img % PATCH:
        raise ValueError(f"image_size {img} is not a multiple of the {PATCH} px patch")
    block = dict(num_attention_heads=spec.heads, intermediate_size=spec.mlp)
    vision = dict(
        backbone_config=dict(model_type="sam3_vit_model", hidden_size=spec.vit_hidden, intermediate_size=spec.vit_mlp,
                             num_hidden_layers=spec.vit_layers, num_attention_heads=spec.vit_heads, image_size=img,
                             patch_size=PATCH, window_size=4, global_attn_indexes=[spec.vit_layers - 1],
                             pretrain_image_size=img // 2),
        fpn_hidden_size=h,
        backbone_feature_sizes=[[4 * img // PATCH] * 2, [2 * img // PATCH] * 2, [img // PATCH] * 2])
    return Sam3Config(
        vision_config=vision,
        text_config=dict(vocab_size=514, bos_token_id=512, eos_token_id=513, pad_token_id=513, hidden_size=h,
                         projection_dim=h, num_hidden_layers=spec.text_layers, max_position_embeddings=32, **block),
        geometry_encoder_config=dict(hidden_size=h, num_layers=1, **block),
        detr_encoder_config=dict(hidden_size=h, num_layers=spec.decoder_layers, **block),
        detr_decoder_config=dict(hidden_size=h, num_layers=spec.decoder_layers, num_queries=spec.num_queries, **block),
        mask_decoder_config=dict(hidden_size=h, num_attention_heads=spec.heads))


def write_detector_checkpoint(folder: str | Path, spec: DetectorSpec = DEMO_SPEC, seed: int = 0) -> Path:
    """Write a randomly initialised detector of ``spec`` with its processor and byte-level tokenizer."""
    from transformers import CLIPTokenizer, Sam3ImageProcessor, Sam3Model, Sam3Processor

    from sam3_core.tiny import write_byte_tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Sam3Model(detector_config(spec))
    model.save_pretrained(folder)
    write_byte_tokenizer(folder)
    side = 4 * spec.image_size // PATCH
    image_processor = Sam3ImageProcessor(size={"height": spec.image_size, "width": spec.image_size},
                                         mask_size={"height": side, "width": side})
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    Sam3Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    logger.info("wrote a random %d-parameter detector to %s", sum(p.numel() for p in model.parameters()), folder)
    return folder
