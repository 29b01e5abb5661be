"""Engine behaviour: caching, concurrency, refine, bad input, loading."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
import torch
from conftest import random_image
from PIL import Image
from tolerances import assert_masks_close, assert_results_close, assert_scores_close

from sam3_core import CheckpointError, EngineOptions, ImageError, PromptError, Sam3Engine, UsageError


def test_second_call_on_same_image_hits_the_cache(engine, rng):
    image = random_image(rng)
    engine.cache.clear()  # other tests share the engine and may have cached this very image
    before_stats, before = engine.cache_stats(), engine.counters()
    engine.segment(image, ["cat"])
    # Same pixels reached through a different type: still one encoding.
    engine.segment(Image.fromarray(image), ["dog", "bird"])
    stats, counters = engine.cache_stats(), engine.counters()
    assert counters.images_encoded - before.images_encoded == 1
    assert stats.misses - before_stats.misses == 1
    assert stats.hits - before_stats.hits == 1
    assert stats.bytes > 0 and stats.entries >= 1


def test_cache_is_bounded_in_bytes(tiny_checkpoint, rng):
    with Sam3Engine.from_pretrained(tiny_checkpoint, device="cpu") as probe:
        one_image = probe.cache.stats().bytes
        probe.encode(random_image(rng))
        one_image = probe.cache.stats().bytes - one_image
    budget = int(one_image * 2.5)
    with Sam3Engine.from_pretrained(tiny_checkpoint, device="cpu", options=EngineOptions(cache_bytes=budget)) as eng:
        for _ in range(5):
            eng.encode(random_image(rng))
        stats = eng.cache_stats()
    assert stats.entries == 2 and stats.evictions == 3 and stats.bytes <= budget


def test_concurrent_asegment_matches_sequential(engine, rng):
    images = [random_image(rng) for _ in range(3)]
    jobs = [(images[i % 3], [f"object {i}", "thing"]) for i in range(12)]
    sequential = [engine.segment(img, phrases, score_threshold=0.0) for img, phrases in jobs]
    before = engine.counters()

    async def run_all():
        return await asyncio.gather(*(engine.asegment(img, p, score_threshold=0.0) for img, p in jobs))

    concurrent = asyncio.run(run_all())
    for seq, conc in zip(sequential, concurrent):
        for a, b in zip(seq, conc):
            assert a.phrase == b.phrase
            assert_results_close(b, a)  # concurrent callers share batches: other batch sizes
    # all images were cached by the sequential pass, and the 12 callers shared detector passes
    assert engine.counters().images_encoded == before.images_encoded
    assert engine.counters().detector_passes - before.detector_passes < len(jobs)


def test_concurrent_callers_on_a_new_image_share_one_encoding(tiny_checkpoint, rng):
    image = random_image(rng)
    with Sam3Engine.from_pretrained(tiny_checkpoint, device="cpu",
                                    options=EngineOptions(max_wait_ms=200)) as eng:
        async def run_all():
            return await asyncio.gather(*(eng.asegment(image, [f"p{i}"]) for i in range(6)))

        asyncio.run(run_all())
        assert eng.counters().images_encoded == 1


def test_sync_calls_from_threads(engine, rng):
    image = random_image(rng)
    expected = engine.segment(image, ["cat"], score_threshold=0.0)[0]
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(engine.segment(image, ["cat"], score_threshold=0.0)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for result in results:  # the threads' requests may be batched together
        assert_results_close(result[0], expected)


def test_refine_matches_tracker_forward(engine, tiny_checkpoint, rng):
    from transformers import Sam3TrackerModel, Sam3TrackerProcessor

    from sam3_core.loading import _TRACKER_KEY_MAPPING

    image = random_image(rng)
    tracker = Sam3TrackerModel.from_pretrained(tiny_checkpoint, key_mapping=_TRACKER_KEY_MAPPING).eval()
    processor = Sam3TrackerProcessor(image_processor=engine.processor.image_processor)
    inputs = processor(images=Image.fromarray(image), input_points=[[[[40.0, 30.0]]]],
                       input_labels=[[[1]]], return_tensors="pt")
    with torch.inference_mode():
        out = tracker(pixel_values=inputs["pixel_values"], input_points=inputs["input_points"],
                      input_labels=inputs["input_labels"], multimask_output=True)
    masks = processor.post_process_masks(out.pred_masks, inputs["original_sizes"])[0][0]
    best = int(out.iou_scores[0, 0].argmax())

    result = engine.refine(image, points=[[40, 30]], point_labels=[1])
    assert result.mask.shape == image.shape[:2]
    assert_masks_close(result.mask, masks[best].numpy())
    assert_scores_close(result.score, float(out.iou_scores[0, 0, best]))
    again = engine.refine(image, points=[[40, 30], [10, 10]], point_labels=[1, 0], box=[5, 5, 80, 60],
                          mask_input=result.low_res_logits)
    assert again.mask.shape == image.shape[:2] and np.isfinite(again.score)


async def _arefine(engine, image):
    return await engine.arefine(image, box=[10, 10, 70, 60])


def test_arefine_and_shared_backbone(engine, rng):
    handler = engine._handler
    assert handler.tracker.vision_encoder.backbone is handler.detector.vision_encoder.backbone
    result = asyncio.run(_arefine(engine, random_image(rng)))
    assert result.mask.dtype == bool and result.box.shape == (4,)


@pytest.mark.parametrize("phrases, error", [([], PromptError), ([""], PromptError), (["  "], PromptError),
                                            (None, PromptError), ([3], PromptError)])
def test_bad_phrases(engine, rng, phrases, error):
    with pytest.raises(error):
        engine.segment(random_image(rng), phrases)


@pytest.mark.parametrize("boxes, labels", [([[10, 10, 5, 20]], None), ([[1, 2, 3]], None),
                                           ([[1, 2, 30, 40]], [2]), ([[1, 2, 30, 40]], [1, 1])])
def test_bad_exemplars(engine, rng, boxes, labels):
    with pytest.raises(PromptError):
        engine.segment(random_image(rng), ["cat"], exemplar_boxes=boxes, exemplar_labels=labels)


@pytest.mark.parametrize("kwargs", [{}, {"points": [[1, 2]]}, {"points": [[1, 2]], "point_labels": [5]},
                                    {"box": [10, 10, 5, 5]}, {"points": [[1, 2, 3]], "point_labels": [1]}])
def test_bad_clicks(engine, rng, kwargs):
    with pytest.raises(PromptError):
        engine.refine(random_image(rng), **kwargs)


def test_bad_images(engine, tmp_path):
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    for source in [corrupt, tmp_path / "missing.png", b"", b"garbage", np.zeros((0, 5, 3), np.uint8), 42]:
        with pytest.raises(ImageError):
            engine.segment(source, ["cat"])


def test_pixel_limit(tiny_checkpoint):
    with Sam3Engine.from_pretrained(tiny_checkpoint, device="cpu", with_tracker=False,
                                    options=EngineOptions(max_pixels=1000)) as eng:
        with pytest.raises(ImageError, match="over the limit"):
            eng.segment(np.zeros((40, 40, 3), np.uint8), ["cat"])
        with pytest.raises(UsageError, match="tracker"):
            eng.refine(np.zeros((20, 20, 3), np.uint8), points=[[1, 1]], point_labels=[1])


def test_long_phrase_is_truncated_with_a_warning(engine, rng):
    phrase = "a very long description of " + "the thing " * 20
    with pytest.warns(UserWarning, match="truncated"):
        (result,) = engine.segment(random_image(rng), [phrase])
    assert result.truncated


def test_closed_engine_refuses_work(tiny_checkpoint, rng):
    eng = Sam3Engine.from_pretrained(tiny_checkpoint, device="cpu", with_tracker=False)
    eng.close()
    with pytest.raises(UsageError, match="closed"):
        eng.segment(random_image(rng), ["cat"])


def test_missing_checkpoint_gives_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="folder"):
        Sam3Engine.from_pretrained(str(tmp_path / "nowhere"), device="cpu")
    with pytest.raises(CheckpointError, match=r"(?i)offline|network|not found"):
        Sam3Engine.from_pretrained("facebook/sam3-does-not-exist-here", device="cpu")


def test_gated_and_disk_errors_are_explained():
    import errno

    import httpx
    from huggingface_hub.errors import GatedRepoError

    from sam3_core.loading import explain_load_error

    response = httpx.Response(403, request=httpx.Request("GET", "https://huggingface.co/facebook/sam3"))
    gated = GatedRepoError("Access to model facebook/sam3 is restricted", response=response)
    assert "hf auth login" in explain_load_error("facebook/sam3", gated)
    assert "HF_TOKEN" in explain_load_error("facebook/sam3", gated)
    full = OSError(errno.ENOSPC, "No space left on device")
    assert "no space left" in explain_load_error("facebook/sam3", full)


def test_position_encodings_are_stored_once(engine, rng):
    first, second = engine.encode(random_image(rng)), engine.encode(random_image(rng))
    assert first.fpn_position_encoding[0] is second.fpn_position_encoding[0]
    assert not torch.equal(first.fpn_hidden_states[0], second.fpn_hidden_states[0])


def _hammer_tokenizer(tokenizer) -> list[BaseException]:
    """Four threads count tokens (no padding) while one tokenizes padded batches, as callers and the
    worker do; returns the errors raised."""
    from sam3_core.detector import count_tokens, tokenize

    errors: list[BaseException] = []

    def counter() -> None:
        try:
            for i in range(600):
                count_tokens(tokenizer, f"a phrase number {i}")
        except BaseException as exc:
            errors.append(exc)

    def padder() -> None:
        try:
            for i in range(600):
                ids, _ = tokenize(tokenizer, ["cat", f"a much longer phrase {i}"], torch.device("cpu"))
                assert ids.shape == (2, 32)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=counter) for _ in range(4)] + [threading.Thread(target=padder)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_engine_tokenizer_is_safe_across_threads(engine):
    """Fast tokenizers change their padding settings per call; unguarded, this mix fails (seen here)."""
    assert not _hammer_tokenizer(engine.tokenizer)
