"""The engine must give what plain transformers gives, phrase by phrase, within the stated tolerances.

The engine batches phrases on one cached image encoding; transformers runs one phrase per call. Float sums in
another order may flip a pixel on the mask threshold, so masks, scores and boxes are compared with
:mod:`tolerances`, not bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_image
from PIL import Image
from tolerances import assert_results_close


@pytest.fixture(scope="module")
def reference(tiny_checkpoint):
    """Plain Sam3Model + Sam3Processor, loaded independently of the engine."""
    from transformers import Sam3Model, Sam3Processor

    model = Sam3Model.from_pretrained(tiny_checkpoint).eval()
    processor = Sam3Processor.from_pretrained(tiny_checkpoint)

    def run(image: np.ndarray, phrase: str | None, threshold: float, boxes=None, labels=None) -> dict:
        kwargs = {}
        if boxes is not None:
            kwargs = {"input_boxes": [boxes], "input_boxes_labels": [labels]}
        inputs = processor(images=Image.fromarray(image), text=phrase, return_tensors="pt", **kwargs)
        with torch.inference_mode():
            outputs = model(**inputs)
        result = processor.post_process_instance_segmentation(
            outputs, threshold=threshold, mask_threshold=0.5, target_sizes=[image.shape[:2]])[0]
        order = torch.argsort(result["scores"], descending=True, stable=True)
        return {k: v[order].numpy() for k, v in result.items()}

    return run


def assert_same(result, expected: dict) -> None:
    assert_results_close(result, expected)


@pytest.mark.parametrize("size", [(90, 120), (200, 64)])
def test_batched_phrases_equal_separate_runs(engine, reference, rng, size):
    image = random_image(rng, *size)
    phrases = ["cat", "red car", "person holding an umbrella", "x"]
    all_scores = engine.segment(image, phrases, score_threshold=0.0)
    # A threshold inside the score range exercises the filtering, not only the ordering.
    threshold = float(np.median(np.concatenate([r.scores for r in all_scores])))
    results = engine.segment(image, phrases, score_threshold=threshold)
    assert [r.phrase for r in results] == phrases
    for phrase, result in zip(phrases, results):
        expected = reference(image, phrase, threshold)
        assert len(expected["scores"]) > 0 or threshold > 0
        assert_same(result, expected)
        assert result.masks.shape[1:] == size and result.masks.dtype == bool


def test_results_hold_rle_and_presence(engine, rng):
    from pycocotools import mask as mask_utils

    image = random_image(rng)
    (result,) = engine.segment(image, ["dog"], score_threshold=0.0)
    assert len(result) > 0 and 0.0 < result.presence_score < 1.0
    for mask, rle in zip(result.masks, result.rles):
        assert rle["size"] == list(image.shape[:2])
        decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        assert np.array_equal(decoded.astype(bool), mask)
    # scores are object score times presence score, so never above the presence score
    assert (result.scores <= result.presence_score + 1e-6).all()


def test_exemplar_boxes_match_processor_path(engine, reference, rng):
    image = random_image(rng)
    boxes, labels = [[10.0, 12.0, 60.0, 70.0], [70.0, 5.0, 110.0, 40.0]], [1, 0]
    (with_text,) = engine.segment(image, ["bird"], exemplar_boxes=boxes, exemplar_labels=labels,
                                  score_threshold=0.0)
    assert_same(with_text, reference(image, "bird", 0.0, boxes, labels))
    (box_only,) = engine.segment(image, None, exemplar_boxes=boxes[:1], score_threshold=0.0)
    assert box_only.phrase == "visual"
    assert_same(box_only, reference(image, None, 0.0, boxes[:1], [1]))


def test_mixed_batch_of_text_and_box_prompts_is_not_contaminated(engine, reference, rng):
    """Box-prompted and text-only requests arriving together must not change each other's output."""
    import asyncio

    image = random_image(rng)

    async def both():
        return await asyncio.gather(
            engine.asegment(image, ["cat"], score_threshold=0.0),
            engine.asegment(image, ["cat"], exemplar_boxes=[[5, 5, 50, 50]], score_threshold=0.0),
        )

    (text_only,), (boxed,) = asyncio.run(both())
    assert_same(text_only, reference(image, "cat", 0.0))
    assert_same(boxed, reference(image, "cat", 0.0, [[5, 5, 50, 50]], [1]))
