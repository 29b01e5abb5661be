"""A ``sam3_video`` model (detector + tracker, the layout of facebook/sam3) around a trained detector.

The detector's weights are kept as they are; the tracker (prompt encoder, mask decoder, memory attention,
memory encoder) and the tracker's FPN neck are new, randomly initialised transformers modules of a small
shape, ready for :mod:`finetune.tracker.train`. The tracker reads the detector's ViT tokens through its own
neck, so its width is the detector's ``fpn_hidden_size``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

PATCH = 14


@dataclass(frozen=True)
class TrackerShape:
    """Depths and widths of the tracker added to a detector (its width is the detector's FPN width).

    ``num_maskmem``: past frames whose mask memory each frame attends to; ``mlp``: feed-forward width.
    """

    decoder_layers: int = 2
    decoder_heads: int = 2
    mlp: int = 64
    memory_layers: int = 1
    num_maskmem: int = 3
    max_object_pointers: int = 4


def tracker_config(detector_config, shape: TrackerShape = TrackerShape()):
    """A ``Sam3TrackerVideoConfig`` that fits ``detector_config`` (a ``Sam3Config``): same image size,
    feature sizes and width."""
    from transformers import Sam3TrackerVideoConfig

    vision = detector_config.vision_config.to_dict()
    hidden = int(vision["fpn_hidden_size"])
    img = int(vision["backbone_config"]["image_size"])
    return Sam3TrackerVideoConfig(
        vision_config=vision,
        prompt_encoder_config=dict(hidden_size=hidden, image_size=img, patch_size=PATCH, mask_input_channels=16),
        mask_decoder_config=dict(hidden_size=hidden, mlp_dim=shape.mlp, num_hidden_layers=shape.decoder_layers,
                                 num_attention_heads=shape.decoder_heads, iou_head_hidden_dim=hidden),
        num_maskmem=shape.num_maskmem, max_object_pointers_in_encoder=shape.max_object_pointers,
        max_cond_frame_num=2, memory_attention_hidden_size=hidden, memory_attention_num_layers=shape.memory_layers,
        memory_attention_num_attention_heads=1, memory_attention_feed_forward_hidden_size=shape.mlp,
        memory_attention_rope_feat_sizes=[img // PATCH] * 2, memory_encoder_hidden_size=hidden,
        memory_encoder_output_channels=64, mask_downsampler_embed_dim=hidden, memory_fuser_num_layers=1,
        memory_fuser_embed_dim=hidden, memory_fuser_intermediate_dim=shape.mlp, image_size=img,
        # Two 4x4 stride-4 convolutions (1 -> 16 -> 256 channels) instead of four 3x3 stride-2 ones: the same
        # 16x reduction of the mask with a third of the weights, which keeps the checkpoint under 4 MB.
        mask_downsampler_kernel_size=4, mask_downsampler_stride=4, mask_downsampler_padding=0,
    )


def video_model_from_detector(detector_dir: str | Path, shape: TrackerShape = TrackerShape(), *, seed: int = 0):
    """A float32 ``Sam3VideoModel`` whose detector is the ``Sam3Model`` (or ``sam3_video``) checkpoint in
    ``detector_dir`` and whose tracker and tracker neck are random (drawn from ``torch.manual_seed(seed)``)."""
    from transformers import Sam3Model, Sam3VideoConfig, Sam3VideoModel

    detector = Sam3Model.from_pretrained(detector_dir, dtype=torch.float32)
    img = int(detector.config.vision_config.backbone_config.image_size)
    config = Sam3VideoConfig(detector_config=detector.config.to_dict(),
                             tracker_config=tracker_config(detector.config, shape).to_dict(),
                             low_res_mask_size=4 * img // PATCH)
    config.image_size = img
    torch.manual_seed(seed)
    model = Sam3VideoModel(config)
    model.requires_grad_(False)
    model.detector_model.load_state_dict(detector.state_dict(), strict=True)
    # The image-wide and the prompt positional encodings are two random buffers (not trained) that must be the
    # same matrix, as in the released checkpoint: otherwise a box or click lands at a different "place" than
    # the image pixels it covers and the decoder cannot localise prompts.
    tracker = model.tracker_model
    tracker.prompt_encoder.shared_embedding.positional_embedding.copy_(
        tracker.shared_image_embedding.positional_embedding)
    logger.info("video model: detector %d params, tracker + neck %d params",
                sum(p.numel() for p in model.detector_model.parameters()),
                sum(p.numel() for p in trainable_parameters(model)))
    return model.float()


def trainable_parameters(model) -> list[torch.nn.Parameter]:
    """The tracker's and its neck's parameters (the detector stays as trained)."""
    return [*model.tracker_model.parameters(), *model.tracker_neck.parameters()]
