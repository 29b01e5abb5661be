"""Small randomly initialised SAM 3 checkpoints, written with no download.

They have the same layout as the released ``facebook/sam3`` (one ``sam3_video`` model holding the
detector, the tracker and the tracker neck, plus the processor and a tokenizer), so tests and
benchmarks load them through exactly the ``from_pretrained`` path a real checkpoint takes. Only the
sizes differ. Latency of a random network depends on its shape, not its weights, so the same
builder at full size (:func:`full_size_config`) times like the real model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

PATCH = 14


@dataclass(frozen=True)
class TinySpec:
    """Shape of a small SAM 3. ``image_size`` must be a multiple of the 14 px patch; ``hidden`` a
    multiple of 64 above 64 (a constraint of the tracker's memory modules)."""

    image_size: int = 112
    hidden: int = 128
    vit_layers: int = 2
    vit_hidden: int = 128
    vit_heads: int = 2
    heads: int = 2
    mlp: int = 64
    text_layers: int = 1
    num_queries: int = 8
    decoder_layers: int = 1


#: The benchmark's "mid-size" CPU model. What matters for the engine's speed-ups is the cost of the
#: image encoder relative to one extra phrase; this shape keeps that ratio close to the released
#: model's (a heavy ViT over a light 128-wide detector head) at a size a 2-core CPU runs in ~1 s.
MID_SPEC = TinySpec(image_size=252, hidden=128, vit_layers=12, vit_hidden=768, vit_heads=12, heads=4, mlp=3072,
                    text_layers=4, num_queries=100, decoder_layers=3)


def _vision_config(spec: TinySpec) -> dict:
    img = spec.image_size
    return dict(
        backbone_config=dict(
            model_type="sam3_vit_model", hidden_size=spec.vit_hidden, intermediate_size=spec.mlp,
            num_hidden_layers=spec.vit_layers, num_attention_heads=spec.vit_heads, image_size=img,
            patch_size=PATCH, window_size=4, global_attn_indexes=[spec.vit_layers - 1],
            pretrain_image_size=img // 2),
        fpn_hidden_size=spec.hidden,
        backbone_feature_sizes=[[4 * img // PATCH] * 2, [2 * img // PATCH] * 2, [img // PATCH] * 2],
    )


def _detector_config(spec: TinySpec):
    from transformers import Sam3Config

    h, block = spec.hidden, dict(num_attention_heads=spec.heads, intermediate_size=spec.mlp)
    return Sam3Config(
        vision_config=_vision_config(spec),
        text_config=dict(vocab_size=514, bos_token_id=512, eos_token_id=513, pad_token_id=513,
                         hidden_size=h, projection_dim=h, num_hidden_layers=spec.text_layers,
                         max_position_embeddings=32, **block),
        geometry_encoder_config=dict(hidden_size=h, num_layers=1, **block),
        detr_encoder_config=dict(hidden_size=h, num_layers=spec.decoder_layers, **block),
        detr_decoder_config=dict(hidden_size=h, num_layers=spec.decoder_layers, num_queries=spec.num_queries,
                                 **block),
        mask_decoder_config=dict(hidden_size=h, num_attention_heads=spec.heads),
    )


def _tracker_config(spec: TinySpec):
    from transformers import Sam3TrackerVideoConfig

    h, img = spec.hidden, spec.image_size
    return Sam3TrackerVideoConfig(
        vision_config=_vision_config(spec),
        prompt_encoder_config=dict(hidden_size=h, image_size=img, patch_size=PATCH, mask_input_channels=16),
        mask_decoder_config=dict(hidden_size=h, mlp_dim=spec.mlp, num_hidden_layers=1,
                                 num_attention_heads=spec.heads, iou_head_hidden_dim=h),
        num_maskmem=3, max_object_pointers_in_encoder=4, max_cond_frame_num=2,
        memory_attention_hidden_size=h, memory_attention_num_layers=1,
        memory_attention_num_attention_heads=1, memory_attention_feed_forward_hidden_size=spec.mlp,
        memory_attention_rope_feat_sizes=[img // PATCH] * 2, memory_encoder_hidden_size=h,
        memory_encoder_output_channels=64, mask_downsampler_embed_dim=h, memory_fuser_num_layers=1,
        memory_fuser_embed_dim=h, memory_fuser_intermediate_dim=spec.mlp, image_size=img,
    )


def tiny_config(spec: TinySpec = TinySpec()):
    """A ``Sam3VideoConfig`` of the given shape (detector + tracker), like facebook/sam3's."""
    from transformers import Sam3VideoConfig

    config = Sam3VideoConfig(detector_config=_detector_config(spec).to_dict(),
                             tracker_config=_tracker_config(spec).to_dict(),
                             low_res_mask_size=4 * spec.image_size // PATCH)
    config.image_size = spec.image_size  # the setter passes the size down to every sub-config
    return config


def full_size_config():
    """The released architecture (1008 px, ViT-L-sized backbone) built from the default configs."""
    from transformers import Sam3VideoConfig

    return Sam3VideoConfig()


def write_byte_tokenizer(folder: Path) -> None:
    """Save a byte-level CLIP tokenizer (256 byte symbols, their ``</w>`` forms, start/end tokens).

    No merges: every character becomes one token, so it needs no download and any text tokenizes.
    """
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": 256 + i for i, s in enumerate(symbols)})
    vocab.update({"<|startoftext|>": 512, "<|endoftext|>": 513})
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)


def write_tiny_checkpoint(folder: str | Path, spec: TinySpec = TinySpec(), *, video: bool = True,
                          seed: int = 0) -> Path:
    """Write a random SAM 3 checkpoint (weights, processor, tokenizer) of shape ``spec`` into ``folder``.

    Args:
        folder: created if missing.
        spec: the shape; the default is the tiny CPU test model (~4.8M parameters, ~19 MB).
        video: also write the video processor files, so ``Sam3VideoProcessor.from_pretrained`` works and the
            one checkpoint serves every command (images, refinement, video); False: image-only.
        seed: weights are drawn from ``torch.manual_seed(seed)``; equal seeds give equal checkpoints.
    """
    return write_random_checkpoint(folder, tiny_config(spec), spec.image_size, video=video, seed=seed)


def write_random_checkpoint(folder: str | Path, config, image_size: int, *, video: bool = False,
                            seed: int = 0) -> Path:
    """Write a randomly initialised ``Sam3VideoModel`` of ``config`` with a matching processor."""
    from transformers import CLIPTokenizer, Sam3ImageProcessor, Sam3Processor, Sam3VideoModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Sam3VideoModel(config).eval()
    model.save_pretrained(folder)
    write_byte_tokenizer(folder)
    mask_side = 4 * image_size // PATCH
    image_processor = Sam3ImageProcessor(size={"height": image_size, "width": image_size},
                                         mask_size={"height": mask_side, "width": mask_side})
    processor = Sam3Processor(image_processor=image_processor, tokenizer=CLIPTokenizer.from_pretrained(folder))
    processor.save_pretrained(folder)
    if video:
        _write_video_processor(folder, image_processor)
    logger.info("wrote a random SAM 3 checkpoint (%d parameters) to %s",
                sum(p.numel() for p in model.parameters()), folder)
    return folder


def _write_video_processor(folder: Path, image_processor) -> None:
    # Sam3VideoProcessor reuses SAM 2's video frame processor (the auto mapping says so too).
    from transformers import CLIPTokenizer, Sam2VideoVideoProcessor, Sam3VideoProcessor

    # Frames must be normalised like the detector's images; SAM 2's frame processor defaults to ImageNet's
    # mean and std, SAM 3's image processor uses 0.5 / 0.5.
    video_processor = Sam2VideoVideoProcessor(size=dict(image_processor.size), image_mean=image_processor.image_mean,
                                              image_std=image_processor.image_std)
    Sam3VideoProcessor(image_processor=image_processor, video_processor=video_processor,
                       tokenizer=CLIPTokenizer.from_pretrained(folder)).save_pretrained(folder)
