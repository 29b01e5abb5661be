"""Fine-tuning a ``sam3_video`` checkpoint (facebook/sam3's layout) exports a ``sam3_video`` model that still tracks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from video_fixtures import moving_shapes

from finetune.synthetic import SyntheticSpec, write_synthetic_dataset
from finetune.trainer import FinetuneConfig, finetune

TRACKER_PREFIXES = ("tracker_model.", "tracker_neck.")
BACKBONE_PREFIX = "detector_model.vision_encoder.backbone."


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    spec = SyntheticSpec(image_size=56, min_radius=4, max_radius=10, max_objects=3)
    return write_synthetic_dataset(tmp_path_factory.mktemp("syn"), 6, seed=3, spec=spec)


def _run(dataset, base: str, out: Path, mode: str, **changes) -> dict:
    config = FinetuneConfig(train_json=str(dataset), output_dir=str(out), base_model=base, val_fraction=0.2,
                            mode=mode, **changes, max_steps=2, warmup_steps=0, save_every=10, batch_size=2, log_every=1,
                            max_eval_images=1, learning_rate=1e-3, threads=1)
    return finetune(config)


def _weights(folder: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "model.safetensors"))


@pytest.fixture(scope="module")
def full_run(dataset, tiny_checkpoint, tmp_path_factory):
    return _run(dataset, tiny_checkpoint, tmp_path_factory.mktemp("ft_video") / "run", "full", one_to_many=True)


def test_video_checkpoint_exports_the_video_layout(full_run, tiny_checkpoint):
    model_dir = Path(full_run["model"])
    assert json.loads((model_dir / "config.json").read_text())["model_type"] == "sam3_video"
    assert full_run["export"] == {"layout": "sam3_video", "tracker": {"carried_over": True, "backbone_changed": True}}
    before, after = _weights(tiny_checkpoint), _weights(model_dir)
    assert before.keys() == after.keys()
    tracker = [k for k in before if k.startswith(TRACKER_PREFIXES)]
    assert len(tracker) > 100 and all(torch.equal(before[k], after[k]) for k in tracker)
    detector = [k for k in before if k.startswith("detector_model.")]
    changed = [k for k in detector if not torch.equal(before[k], after[k])]
    assert any(k.startswith("detector_model.detr_decoder.") for k in changed)
    assert any(k.startswith(BACKBONE_PREFIX) for k in changed)  # full mode trains the shared ViT too


def test_exported_detector_is_the_trained_one(full_run):
    # The Sam3Model the image engine loads from the export is the fine-tuned detector, tensor for tensor.
    from transformers import Sam3Model

    loaded = Sam3Model.from_pretrained(full_run["model"]).state_dict()
    saved = _weights(full_run["model"])
    assert all(torch.equal(loaded[k], saved["detector_model." + k]) for k in loaded)


def test_image_and_video_engines_load_the_export_and_track(full_run):
    from sam3_core import Sam3Engine
    from sam3_core.video import VideoEngine, VideoOptions

    with Sam3Engine.from_pretrained(full_run["model"], device="cpu") as engine:
        assert engine.has_tracker  # refinement (clicks and boxes) comes with the tracker
        assert len(engine.segment(np.zeros((56, 56, 3), np.uint8), ["red circle"])) == 1
    options = VideoOptions(score_threshold=0.05, new_object_threshold=0.1, hotstart_delay=2)
    with VideoEngine.from_pretrained(full_run["model"], device="cpu", options=options) as video:
        session = video.start_session(moving_shapes(5))
        video.add_text_prompts(session, ["red circle"])
        frames = [r.frame_index for r in video.propagate(session)]
    assert frames == [0, 1, 2, 3, 4]


def test_frozen_encoders_keep_tracking_exactly_as_it_was(dataset, tiny_checkpoint, tmp_path):
    report = _run(dataset, tiny_checkpoint, tmp_path / "frozen", "frozen")
    assert report["export"]["tracker"] == {"carried_over": True, "backbone_changed": False}
    before, after = _weights(tiny_checkpoint), _weights(report["model"])
    same = [k for k in before if k.startswith((*TRACKER_PREFIXES, BACKBONE_PREFIX))]
    assert all(torch.equal(before[k], after[k]) for k in same)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("detector_model.detr_decoder."))
