"""Training data for the tracker: synthetic images and clips, encoded once by the frozen detector's ViT.

The ViT is shared with the detector and stays as trained, so each frame's tokens are computed once up front
(``torch.no_grad``) and only the tracker neck and the tracker see gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from finetune.synthetic import SyntheticSpec, draw_image

from .clips import ClipSpec, draw_clip
from .steps import PromptBatch, jittered_box


@torch.no_grad()
def encode_frames(video_model, processor, frames: np.ndarray, batch: int = 64) -> torch.Tensor:
    """The detector's ViT tokens ``(M, HW, C_vit)`` (float16, to halve memory) of ``(M, H, W, 3)`` uint8 frames."""
    out = []
    for start in range(0, len(frames), batch):
        pixels = processor.image_processor(list(frames[start:start + batch]), return_tensors="pt").pixel_values
        vision = video_model.detector_model.get_vision_features(pixel_values=pixels)
        out.append(vision.last_hidden_state.to(torch.float16))
    return torch.cat(out)


@dataclass
class ImageSet:
    """``tokens``: ``(M, HW, C)``; ``masks[i]``: ``(K_i, H, W)`` bool instances of image i."""

    tokens: torch.Tensor
    masks: list[np.ndarray]


@dataclass
class ClipSet:
    """``tokens[c]``: ``(T, HW, C)``; ``masks[c]``: ``(N_c, T, H, W)`` bool."""

    tokens: list[torch.Tensor]
    masks: list[np.ndarray]


def make_images(video_model, processor, count: int, seed: int, spec: SyntheticSpec | None = None) -> ImageSet:
    spec = spec or SyntheticSpec()
    rng = np.random.default_rng(seed)
    drawn = [draw_image(rng, spec) for _ in range(count)]
    keep = [(image, np.stack([m for _, m in objects])) for image, objects in drawn if objects]
    tokens = encode_frames(video_model, processor, np.stack([image for image, _ in keep]))
    return ImageSet(tokens, [masks for _, masks in keep])


def make_clips(video_model, processor, count: int, seed: int, spec: ClipSpec | None = None) -> ClipSet:
    spec = spec or ClipSpec()
    rng = np.random.default_rng(seed)
    clips = [c for c in (draw_clip(rng, spec) for _ in range(count)) if c.names]
    tokens = encode_frames(video_model, processor, np.concatenate([c.frames for c in clips]))
    return ClipSet(list(tokens.split(spec.num_frames)), [c.masks for c in clips])


def _point(mask: np.ndarray, rng: np.random.Generator, inside: bool) -> list[float]:
    ys, xs = np.nonzero(mask if inside else ~mask)
    k = rng.integers(len(xs))
    return [float(xs[k]), float(ys[k])]


def sample_prompts(rng: np.random.Generator, masks: list[np.ndarray], per_image: int = 2) -> PromptBatch:
    """Prompts for ``per_image`` instances of each image, one kind for the whole batch (tensors must align):
    a jittered box (half the batches; one output mask), one foreground click (three candidate masks, as
    ``refine`` asks for a lone click) or three clicks, each foreground or background (one mask)."""
    kind = rng.choice(["box", "click", "clicks"], p=[0.5, 0.3, 0.2])
    targets, boxes, points, labels = [], [], [], []
    for image_masks in masks:
        chosen = rng.choice(len(image_masks), per_image, replace=len(image_masks) < per_image)
        targets.append(image_masks[chosen])
        for mask in image_masks[chosen]:
            if kind == "box":
                boxes.append(jittered_box(mask, rng, 0.1))
            elif kind == "click":
                points.append([_point(mask, rng, True)])
                labels.append([1])
            else:
                signs = [1] + [int(rng.random() < 0.5) for _ in range(2)]
                points.append([_point(mask, rng, bool(s)) for s in signs])
                labels.append(signs)
    size = len(masks)
    batch = PromptBatch(targets=torch.as_tensor(np.stack(targets)), multimask=kind == "click")
    if kind == "box":
        batch.boxes = torch.tensor(boxes).view(size, per_image, 4)
    else:
        batch.points = torch.tensor(points).view(size, per_image, -1, 2)
        batch.labels = torch.tensor(labels, dtype=torch.int32).view(size, per_image, -1)
    return batch
