"""Tracker training: synthetic clips, the refine and unrolled-clip losses, and that a few optimiser steps on
one small batch lower them (the network is transformers' own; only the glue is ours)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finetune.synthetic import COLOURS, SyntheticSpec
from finetune.tracker.clips import ClipSpec, draw_clip, read_clip_truth, write_clip
from finetune.tracker.data import make_clips, make_images, sample_prompts
from finetune.tracker.losses import tracker_loss
from finetune.tracker.model import TrackerShape, trainable_parameters, video_model_from_detector
from finetune.tracker.steps import image_loss, unroll_clip
from sam3_core.defaults import DEMO_MODEL_DIR


def test_clips_are_seeded_and_masks_are_the_visible_coloured_pixels():
    spec = ClipSpec(num_frames=4)
    a, b = draw_clip(np.random.default_rng(3), spec), draw_clip(np.random.default_rng(3), spec)
    assert np.array_equal(a.frames, b.frames) and a.names == b.names
    assert a.masks.shape == (len(a.names), 4, 112, 112)
    assert (a.masks.sum(axis=0) <= 1).all()  # visible regions never overlap
    for name, masks in zip(a.names, a.masks):
        colour = np.array(COLOURS[name.split()[0]], np.float32)
        for frame, mask in zip(a.frames, masks):
            if mask.sum() > 20:  # the object's pixels carry its colour (noise aside)
                assert np.abs(frame[mask].astype(np.float32).mean(0) - colour).max() < 25
    assert not np.array_equal(a.masks[:, 0], a.masks[:, -1])  # things move


def test_written_clip_round_trips(tmp_path):
    clip = draw_clip(np.random.default_rng(5), ClipSpec(num_frames=3))
    write_clip(tmp_path, clip)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["00000.png", "00001.png", "00002.png"]
    names, masks = read_clip_truth(tmp_path)
    assert names == clip.names and np.array_equal(masks, clip.masks)


def test_tracker_loss_prefers_the_right_mask_and_trains_only_the_best_candidate():
    target = torch.zeros(1, 16, 16, dtype=torch.bool)
    target[0, 4:12, 4:12] = True
    good = torch.where(target, 8.0, -8.0)[:, None]
    bad = -good
    iou = torch.ones(1, 2)
    both = tracker_loss(torch.cat([good, bad], 1), iou, torch.tensor([5.0]), target)
    assert tracker_loss(good, iou[:, :1], torch.tensor([5.0]), target) < tracker_loss(bad, iou[:, :1],
                                                                                        torch.tensor([5.0]), target)
    # with two candidates only the better one's mask loss counts; the IoU head is told the bad one is 0
    assert both < tracker_loss(bad, iou[:, :1], torch.tensor([5.0]), target)
    empty = torch.zeros_like(target)
    assert tracker_loss(bad, iou[:, :1], torch.tensor([-5.0]), empty) < 0.01  # absent: only the visible score


@pytest.fixture(scope="module")
def small_setup():
    from transformers import Sam3Processor

    torch.manual_seed(0)
    model = video_model_from_detector(DEMO_MODEL_DIR, TrackerShape(), seed=1).eval()
    processor = Sam3Processor.from_pretrained(DEMO_MODEL_DIR)
    images = make_images(model, processor, 4, seed=11)
    clips = make_clips(model, processor, 1, seed=12, spec=ClipSpec(image=SyntheticSpec(max_objects=2),
                                                                    num_frames=3))
    return model, images, clips


def _fit(model, loss_fn, steps: int = 8) -> list[float]:
    params = trainable_parameters(model)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_refine_loss_decreases_on_a_fixed_batch(small_setup):
    model, images, _ = small_setup
    batch = sample_prompts(np.random.default_rng(0), images.masks, per_image=2)
    losses = _fit(model, lambda: image_loss(model, images.tokens.float(), batch))
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.8 * losses[0], losses


def test_unrolled_clip_loss_decreases_and_reaches_every_tracker_part(small_setup):
    model, _, clips = small_setup
    tokens, masks = clips.tokens[0].float(), torch.as_tensor(clips.masks[0])
    losses = _fit(model, lambda: unroll_clip(model, tokens, masks, rng=np.random.default_rng(0)))
    assert losses[-1] < 0.8 * losses[0], losses
    model.zero_grad()
    unroll_clip(model, tokens, masks, rng=np.random.default_rng(0)).backward()
    tracker = model.tracker_model
    for part in (tracker.memory_attention, tracker.memory_encoder, tracker.mask_decoder, model.tracker_neck):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), part


def test_a_short_run_saves_a_checkpoint_the_engines_load_with_matching_normalisation(tmp_path):
    from transformers import Sam3VideoProcessor

    from finetune.tracker.train import TrackerTrainConfig, save_video_checkpoint, train_tracker
    from sam3_core.video.engine import VideoEngine

    config = TrackerTrainConfig(output_dir=str(tmp_path), train_images=10, train_clips=3, clip_frames=3,
                                image_batch=2, steps=2, warmup_steps=1, log_every=1)
    model, log = train_tracker(config)
    assert log["steps_done"] == 2 and len(log["history"]) == 2
    folder = save_video_checkpoint(model, config.detector, tmp_path / "model")
    processor = Sam3VideoProcessor.from_pretrained(folder)
    # frames must be normalised like the detector's training images, not with the video processor's defaults
    assert list(processor.video_processor.image_mean) == list(processor.image_processor.image_mean)
    assert list(processor.video_processor.image_std) == list(processor.image_processor.image_std)
    with VideoEngine.from_pretrained(str(folder), device="cpu") as engine:
        assert engine.model.tracker_model.config.vision_config.fpn_hidden_size == 64
