"""The shipped demo model: ``demo`` resolves to it, the engine loads it, and it really segments
held-out synthetic images (images drawn with a seed used neither for its training nor its validation)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from finetune.demo import DEMO_MODEL_DIR, resolve_model_id
from finetune.synthetic import SyntheticSpec, category_names, draw_image

# Measured on the shipped model: ~84% of instances found at mask IoU >= 0.5, ~25% of absent phrases answered
# with something. A random checkpoint finds none. The bounds leave room for CPU-to-CPU differences.
HIT_RATE = 0.5
FALSE_ALARM_RATE = 0.5


def test_demo_name_resolves_to_the_shipped_folder():
    assert resolve_model_id("demo") == str(DEMO_MODEL_DIR)
    assert resolve_model_id("facebook/sam3") == "facebook/sam3"
    assert (DEMO_MODEL_DIR / "model.safetensors").stat().st_size < 4_000_000  # "a few MB at most"
    report = json.loads((DEMO_MODEL_DIR / "training.json").read_text())
    assert report["after"]["AP50"] > report["before"]["AP50"]


@pytest.fixture(scope="module")
def demo_engine():
    from sam3_core import Sam3Engine

    with Sam3Engine.from_pretrained(resolve_model_id("demo"), device="cpu", with_tracker=False) as engine:
        yield engine


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_demo_model_finds_present_phrases_and_not_absent_ones(demo_engine):
    rng = np.random.default_rng(12345)
    names = category_names()
    hits = positives = false_alarms = negatives = 0
    for _ in range(12):
        image, objects = draw_image(rng, SyntheticSpec())
        present = {name for name, _ in objects}
        absent = [n for n in names if n not in present][:2]
        results = demo_engine.segment(image, [*sorted(present), *absent], score_threshold=0.5)
        for result in results:
            truth = [m for name, m in objects if name == result.phrase]
            if truth:
                positives += len(truth)
                hits += sum(any(_iou(m, p) >= 0.5 for p in result.masks) for m in truth)
            else:
                negatives += 1
                false_alarms += len(result) > 0
    assert hits / positives >= HIT_RATE, (hits, positives)
    assert false_alarms / negatives <= FALSE_ALARM_RATE, (false_alarms, negatives)


def test_model_demo_resolves_through_the_engines_loader():
    """``--model demo`` is resolved by sam3_core itself (no import of finetune): hub probe and loader."""
    from sam3_core import Sam3Engine
    from sam3_core.hub import hub_access

    assert hub_access("demo") == {}  # a local folder: never looked up on the hub
    with Sam3Engine.from_pretrained("demo", device="cpu", with_tracker=False) as engine:
        assert len(engine.segment(np.zeros((64, 64, 3), np.uint8), ["red circle"])) == 1
