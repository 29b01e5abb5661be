"""End to end on CPU: fine-tune a tiny detector, export it, load it in the engine, resume, LoRA, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from finetune.evaluate import cgf1, duplicates, evaluate, mask_ap
from finetune.specs import DetectorSpec, write_detector_checkpoint
from finetune.synthetic import SyntheticSpec, write_synthetic_dataset
from finetune.trainer import FinetuneConfig, finetune

TINY = DetectorSpec(image_size=56, hidden=32, vit_hidden=32, vit_layers=2, vit_heads=2, vit_mlp=64, heads=2, mlp=64,
                    text_layers=1, num_queries=8, decoder_layers=2)
SMALL = SyntheticSpec(image_size=56, min_radius=4, max_radius=10, max_objects=4)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("syn"), 10, seed=5, spec=SMALL)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return write_detector_checkpoint(tmp_path_factory.mktemp("base"), TINY, seed=0)


def _config(dataset, base, out, **changes) -> FinetuneConfig:
    fields = dict(train_json=str(dataset), output_dir=str(out), base_model=str(base), val_fraction=0.2,
                  max_steps=4, warmup_steps=0, save_every=2, batch_size=2, log_every=1, max_eval_images=2,
                  learning_rate=1e-3, threads=1)
    fields.update(changes)
    return FinetuneConfig(**fields)


def test_finetune_exports_a_model_the_engine_loads(dataset, base, tmp_path):
    report = finetune(_config(dataset, base, tmp_path / "run", eval_every=2))
    assert report["global_step"] == 4 and set(report["before"]) >= {"AP", "AP50", "cgF1", "pmF1", "IL_MCC"}
    losses = [h["loss"] for h in report["history"] if "loss" in h]
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert any("eval_AP" in h for h in report["history"])  # the periodic held-out evaluation ran
    assert json.loads((tmp_path / "run" / "report.json").read_text())["global_step"] == 4
    from sam3_core import Sam3Engine

    with Sam3Engine.from_pretrained(report["model"], device="cpu") as engine:
        results = engine.segment(np.zeros((56, 56, 3), np.uint8), ["red circle"])
    assert len(results) == 1
    from transformers import Sam3Model

    trained = Sam3Model.from_pretrained(report["model"]).state_dict()
    start = Sam3Model.from_pretrained(str(base)).state_dict()
    assert trained.keys() == start.keys()
    assert any(not torch.equal(trained[k], start[k]) for k in trained)


def test_resume_continues_from_the_last_checkpoint(dataset, base, tmp_path):
    out = tmp_path / "run"
    first = finetune(_config(dataset, base, out, max_steps=2))
    assert first["global_step"] == 2 and (out / "checkpoint-2").is_dir()
    second = finetune(_config(dataset, base, out, max_steps=4, resume=True))
    assert second["resumed_from"].endswith("checkpoint-2")
    logged = [h["step"] for h in second["history"] if "loss" in h]
    assert logged == [3, 4]  # steps 1-2 were not trained again


def test_lora_run_exports_merged_weights(dataset, base, tmp_path):
    pytest.importorskip("peft")
    # With the one-to-many branch on: its self-attention wrapper must work around peft's LoRA layers too.
    report = finetune(_config(dataset, base, tmp_path / "lora", mode="lora", max_steps=2, one_to_many=True))
    assert any("o2m" in h for h in report["history"])
    from transformers import Sam3Model

    model = Sam3Model.from_pretrained(report["model"])
    assert not any("lora" in k for k in model.state_dict())


def test_frozen_mode_keeps_the_encoders(dataset, base, tmp_path):
    report = finetune(_config(dataset, base, tmp_path / "frozen", mode="frozen", max_steps=2))
    from transformers import Sam3Model

    trained, start = Sam3Model.from_pretrained(report["model"]), Sam3Model.from_pretrained(str(base))
    for name in ("vision_encoder", "text_encoder"):
        a, b = getattr(trained, name).state_dict(), getattr(start, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    a, b = trained.detr_decoder.state_dict(), start.detr_decoder.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_metrics_of_perfect_and_empty_predictions(dataset):
    from finetune.data import instance_masks, load_coco

    records = load_coco(dataset)[:3]
    phrases = sorted({i.category for r in records for i in r.instances})
    perfect = []
    for r in records:
        masks = instance_masks(r)
        for p in phrases:
            own = [m for i, m in zip(r.instances, masks) if i.category == p]
            perfect.append({"image_id": r.image_id, "phrase": p, "scores": np.ones(len(own)),
                            "masks": np.stack(own) if own else np.zeros((0, 56, 56), bool)})
    assert mask_ap(records, perfect, phrases)["AP"] == pytest.approx(1.0)
    assert cgf1(records, perfect)["cgF1"] == pytest.approx(100.0, abs=0.1)
    empty = [{**p, "scores": np.zeros(0), "masks": p["masks"][:0]} for p in perfect]
    assert cgf1(records, empty)["cgF1"] == 0.0
    assert mask_ap(records, empty, phrases)["AP"] == 0.0
    assert duplicates(records, perfect) == {"kept_per_gt": pytest.approx(1.0), "dup_rate": 0.0}
    doubled = [{**p, "scores": np.concatenate([p["scores"], p["scores"] * 0.9]),
                "masks": np.concatenate([p["masks"], p["masks"]])} for p in perfect]
    assert duplicates(records, doubled) == {"kept_per_gt": pytest.approx(2.0), "dup_rate": pytest.approx(0.5)}


def test_evaluate_runs_on_a_model(dataset, base):
    from transformers import Sam3Model, Sam3Processor

    from finetune.data import load_coco

    records = load_coco(dataset)[:2]
    metrics = evaluate(Sam3Model.from_pretrained(str(base)), Sam3Processor.from_pretrained(str(base)), records,
                       ["red circle", "blue square"])
    assert 0.0 <= metrics["AP"] <= 1.0 and -1.0 <= metrics["IL_MCC"] <= 1.0


def test_cli_finetune_and_synthetic_data(tmp_path, base):
    from cli.main import main

    assert main(["make-synthetic-data", str(tmp_path / "data"), "--images", "6", "--size", "56"]) == 0
    assert main(["finetune", str(tmp_path / "data" / "annotations.json"), "--out", str(tmp_path / "run"),
                 "--model", str(base), "--max-steps", "2", "--batch-size", "2", "--val-fraction", "0.34",
                 "--threads", "1", "--no-o2m"]) == 0
    assert (tmp_path / "run" / "model" / "config.json").is_file()


def test_training_starts_from_a_float16_checkpoint(dataset, base, tmp_path):
    # The demo ships float16 weights; training must still run in float32 (float16 on CPU gives NaNs).
    from finetune.demo import package_demo

    half = package_demo(base, {"before": {}, "after": {}}, dest=tmp_path / "half")
    report = finetune(_config(dataset, half, tmp_path / "run", max_steps=2))
    assert all(np.isfinite(h["loss"]) for h in report["history"] if "loss" in h)


def test_packaging_a_detector_never_drops_the_demo_tracker(tmp_path):
    from finetune.demo import package_demo
    from sam3_core.defaults import DEMO_MODEL_DIR
    from sam3_core.errors import UsageError

    video_demo = tmp_path / "demo"
    video_demo.mkdir()
    (video_demo / "config.json").write_text((DEMO_MODEL_DIR / "config.json").read_text())
    with pytest.raises(UsageError, match="finetune-tracker"):
        package_demo(DEMO_MODEL_DIR, {}, dest=video_demo)
