"""Train the tracker of a ``sam3_video`` demo checkpoint on synthetic images and clips (CPU is enough).

Each step takes (a) a batch of images with box / click prompts on their instances (what ``refine`` does)
and (b) one clip unrolled from its first frame (what ``track`` does), sums the two losses and updates the
tracker and its neck with AdamW under a warm-up + cosine schedule. The detector is not changed.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from sam3_core.defaults import DEMO_MODEL_DIR

from .clips import ClipSpec
from .data import ClipSet, ImageSet, make_clips, make_images, sample_prompts
from .model import TrackerShape, trainable_parameters, video_model_from_detector
from .steps import image_loss, unroll_clip

logger = logging.getLogger(__name__)


@dataclass
class TrackerTrainConfig:
    """Settings of one tracker training run (defaults: the shipped demo model's run)."""

    detector: str = str(DEMO_MODEL_DIR)
    output_dir: str = "runs/tracker"
    init_from: str | None = None  # a sam3_video checkpoint whose tracker (and neck) to start from
    shape: TrackerShape = field(default_factory=TrackerShape)
    train_images: int = 1500
    train_clips: int = 400
    clip_frames: int = 5
    clips_per_step: int = 1
    objects_per_clip: int = 2
    box_start_prob: float = 0.25
    image_batch: int = 8
    prompts_per_image: int = 2
    steps: int = 4000
    max_seconds: float | None = None
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 1
    log_every: int = 50


def _lr_factor(step: int, config: TrackerTrainConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def train_step(model, images: ImageSet, clips: ClipSet, rng: np.random.Generator,
               config: TrackerTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The two losses of one step (not yet backpropagated): refinement on images, tracking on one clip."""
    chosen = rng.choice(len(images.masks), config.image_batch, replace=False)
    batch = sample_prompts(rng, [images.masks[i] for i in chosen], config.prompts_per_image)
    refine = image_loss(model, images.tokens[chosen].float(), batch)
    track = refine.new_zeros(())
    for c in rng.choice(len(clips.masks), config.clips_per_step, replace=False):
        masks = clips.masks[c]
        objects = rng.choice(len(masks), min(config.objects_per_clip, len(masks)), replace=False)
        track = track + unroll_clip(model, clips.tokens[c].float(), torch.as_tensor(masks[objects]),
                                    box_prompt=bool(rng.random() < config.box_start_prob), rng=rng)
    return refine, track / config.clips_per_step


def train_tracker(config: TrackerTrainConfig) -> tuple[object, dict]:
    """Build the model around ``config.detector``, train it, and return ``(model, log)`` (model in eval mode)."""
    from transformers import Sam3Processor

    torch.set_num_threads(config.threads)
    started = time.monotonic()
    model = video_model_from_detector(config.detector, config.shape, seed=config.seed).eval()
    if config.init_from:
        _load_tracker(model, config.init_from)
    processor = Sam3Processor.from_pretrained(config.detector)
    images = make_images(model, processor, config.train_images, seed=config.seed + 1)
    clips = make_clips(model, processor, config.train_clips, seed=config.seed + 2,
                       spec=ClipSpec(num_frames=config.clip_frames))
    logger.info("encoded %d images and %d clips in %.0f s", len(images.masks), len(clips.masks),
                time.monotonic() - started)
    # Everything runs in eval mode (inference's branches) except the mask decoder, which in eval mode swaps an
    # unstable single mask for one of its multi-mask candidates: the loss must reach the token it is about.
    model.tracker_model.mask_decoder.train()
    for p in model.parameters():
        p.requires_grad_(False)
    params = trainable_parameters(model)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, config))
    rng = np.random.default_rng(config.seed)
    history, running = [], np.zeros(2)
    step = 0
    for step in range(config.steps):
        refine, track = train_step(model, images, clips, rng, config)
        optimizer.zero_grad(set_to_none=True)
        (refine + track).backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        schedule.step()
        running += [refine.item(), track.item()]
        if (step + 1) % config.log_every == 0:
            mean = running / config.log_every
            history.append({"step": step + 1, "refine_loss": round(mean[0], 4), "track_loss": round(mean[1], 4),
                            "seconds": round(time.monotonic() - started)})
            logger.info("step %d  refine %.4f  track %.4f  (%.0f s)", step + 1, mean[0], mean[1],
                        time.monotonic() - started)
            running[:] = 0
        if config.max_seconds is not None and time.monotonic() - started > config.max_seconds:
            logger.info("time budget reached at step %d", step + 1)
            break
    for p in model.parameters():
        p.requires_grad_(False)
    log = {"config": {**asdict(config), "shape": asdict(config.shape)}, "steps_done": step + 1,
           "seconds": round(time.monotonic() - started), "history": history}
    return model.eval(), log


def _load_tracker(model, checkpoint: str | Path) -> None:
    """Copy the tracker and tracker-neck weights of a ``sam3_video`` checkpoint into ``model``."""
    from transformers import Sam3VideoModel

    source = Sam3VideoModel.from_pretrained(checkpoint, dtype=torch.float32)
    model.tracker_model.load_state_dict(source.tracker_model.state_dict())
    model.tracker_neck.load_state_dict(source.tracker_neck.state_dict())
    logger.info("tracker initialised from %s", checkpoint)


def save_video_checkpoint(model, detector_dir: str | Path, dest: str | Path, *, half: bool = True) -> Path:
    """Write ``model`` (a ``Sam3VideoModel``) with the detector's processor and tokenizer, plus the video
    processor, so the image engine, the video engine and ``--model <dest>`` load it."""
    from transformers import Sam2VideoVideoProcessor, Sam3Processor, Sam3VideoProcessor

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    (model.to(torch.float16) if half else model).save_pretrained(dest)
    model.float()
    processor = Sam3Processor.from_pretrained(detector_dir)
    processor.save_pretrained(dest)
    # Frames must be normalised exactly as the detector's training images were (SAM 3: mean = std = 0.5);
    # the video processor's own defaults are ImageNet's, which would shift every feature the models see.
    image = processor.image_processor
    video_processor = Sam2VideoVideoProcessor(size=dict(image.size), image_mean=list(image.image_mean),
                                              image_std=list(image.image_std), resample=image.resample)
    Sam3VideoProcessor(image_processor=processor.image_processor, video_processor=video_processor,
                       tokenizer=processor.tokenizer).save_pretrained(dest)
    return dest


def write_log(log: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(log, indent=2))
