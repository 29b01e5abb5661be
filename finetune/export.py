"""Writing a fine-tuned detector in the layout the run started from.

A ``sam3`` (detector-only) starting checkpoint gives a ``sam3`` folder. A ``sam3_video`` one (the layout
of facebook/sam3: ``detector_model.*``, ``tracker_model.*``, ``tracker_neck.*``) gives a ``sam3_video``
folder: the starting video model with its detector replaced by the fine-tuned one, so the result still
tracks. In that layout the tracker has no ViT of its own: it reads the detector's backbone output
through its own neck (``tracker_neck``). Its weights are copied unchanged, but when the fine-tune changed
the backbone (``full`` or ``lora`` mode) the tracker sees the new features; ``frozen`` mode keeps
tracking exactly as it was. The export says which happened.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

BACKBONE_PREFIX = "vision_encoder.backbone."


def checkpoint_model_type(model_id: str) -> str | None:
    """``model_type`` of a checkpoint's ``config.json`` (folder or hub id), e.g. ``"sam3"`` or ``"sam3_video"``."""
    from transformers import PretrainedConfig

    config, _ = PretrainedConfig.get_config_dict(model_id)
    return config.get("model_type")


def _same_backbone(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    keys = [k for k in a if k.startswith(BACKBONE_PREFIX)]
    return all(k in b and torch.equal(a[k].float(), b[k].float()) for k in keys)


def export_detector(detector: nn.Module, processor, folder: str | Path, base_model: str) -> dict:
    """Save ``detector`` (a float32 ``Sam3Model`` on CPU, LoRA already merged) and its processor(s).

    Args:
        detector: the fine-tuned detector.
        processor: its ``Sam3Processor``.
        folder: created if missing.
        base_model: the checkpoint the run started from (folder or hub id); its layout is kept.

    Returns:
        ``{"layout": "sam3" | "sam3_video", "tracker": None | {"carried_over": True, "backbone_changed": bool}}``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layout = checkpoint_model_type(base_model)
    if layout != "sam3_video":
        detector.save_pretrained(folder)
        processor.save_pretrained(folder)
        return {"layout": "sam3", "tracker": None}
    from transformers import Sam3VideoModel, Sam3VideoProcessor

    video = Sam3VideoModel.from_pretrained(base_model, dtype=torch.float32)
    tuned = detector.state_dict()
    changed = not _same_backbone(tuned, video.detector_model.state_dict())
    video.detector_model.load_state_dict(tuned, strict=True)
    video.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    # The video processor files (frame resizing) come from the starting checkpoint, as the video engine needs
    # them; an image-only start (``make-tiny-checkpoint --image-only``) has none, and its export has none either.
    try:
        Sam3VideoProcessor.from_pretrained(base_model).save_pretrained(folder)
    except OSError as err:
        logger.warning("%s has no video processor files, so neither has the export: %s", base_model, err)
    if changed:
        logger.warning("the fine-tune changed the ViT backbone, which the tracker shares in the sam3_video layout: "
                       "the tracker's own weights are carried over unchanged but now read the new features "
                       "(train with --mode frozen to keep tracking exactly as before)")
    return {"layout": "sam3_video", "tracker": {"carried_over": True, "backbone_changed": changed}}
