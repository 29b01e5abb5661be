"""Issue 11, engine and input rows: geometry finite and clipped (rows 1, 10), the pixel limit and the
admission budget (row 2), image layout and micro-batch isolation (row 3).

Requests are built with the engine's own request builders and, where the point is what a shared
micro-batch does, handed to its batch handler directly, so the batch's make-up does not depend on
thread timing.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from conftest import random_image

from sam3_core import AdmissionError, EngineOptions, ImageError, PromptError, Sam3Engine
from sam3_core.admission import AdmissionLimits, check_admission, estimate_request_bytes, max_masks_per_phrase
from sam3_core.images import DEFAULT_MAX_PIXELS, load_image
from sam3_core.video.prompts import check_box, check_points

HEIGHT, WIDTH = 60, 80


def _image(seed: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    return random_image(np.random.default_rng(seed), height, width)


def _cxcywh(request) -> np.ndarray:
    return request.prompts[0].boxes.numpy()


# -- row 1: exemplar and refine boxes are clipped to the image -----------------------------------------


def test_exemplar_box_past_the_edges_is_clipped_to_the_image(engine):
    image = _image(1)
    past = engine._segment_request(image, ["a"], [[-30, -20, WIDTH + 40, HEIGHT + 25]], None, 0.5, 0.5)
    inside = engine._segment_request(image, ["a"], [[0, 0, WIDTH, HEIGHT]], None, 0.5, 0.5)
    # Normalised cx, cy, w, h: the clipped box is the whole image, so roi_align samples at most the image.
    np.testing.assert_allclose(_cxcywh(past), [[0.5, 0.5, 1.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(_cxcywh(past), _cxcywh(inside), atol=1e-6)


def test_clipped_exemplar_box_segments_like_the_box_inside_the_image(engine):
    image = _image(9)
    past = engine.segment(image, ["a"], exemplar_boxes=[[-30, 10, 40, HEIGHT + 30]], score_threshold=0.0)[0]
    inside = engine.segment(image, ["a"], exemplar_boxes=[[0, 10, 40, HEIGHT]], score_threshold=0.0)[0]
    assert len(past) == len(inside) > 0
    np.testing.assert_allclose(past.scores, inside.scores, atol=1e-4)
    assert np.mean(past.masks != inside.masks) < 0.01  # differing-pixel fraction


def test_exemplar_box_far_outside_the_image_is_refused_before_the_worker(engine):
    before = engine._worker.stats().requests
    with pytest.raises(PromptError, match="far outside the 80x60 image"):
        engine.segment(_image(2), ["a"], exemplar_boxes=[[-1000, -1000, 1e9, 1e9]])
    with pytest.raises(PromptError, match="does not overlap"):
        engine.segment(_image(2), ["a"], exemplar_boxes=[[WIDTH + 5, 0, WIDTH + 30, 10]])
    assert engine._worker.stats().requests == before


def test_refine_box_is_clipped_and_absurd_boxes_refused(engine):
    image = _image(3)
    request = engine._refine_request(image, None, None, [-10, -5, WIDTH + 10, HEIGHT + 5], None, None)
    assert request.box == [0.0, 0.0, float(WIDTH), float(HEIGHT)]
    with pytest.raises(PromptError, match="far outside"):
        engine._refine_request(image, None, None, [0, 0, 1e9, 10], None, None)


def test_video_box_is_clipped_to_the_frame_and_absurd_ones_refused():
    corners = check_box([-4, -3, WIDTH + 6, HEIGHT + 2], (HEIGHT, WIDTH))
    np.testing.assert_allclose(corners, [[0, 0], [WIDTH, HEIGHT]])
    with pytest.raises(PromptError, match="far outside"):
        check_box([0, 0, 1e39, 5], (HEIGHT, WIDTH))
    with pytest.raises(PromptError, match="finite"):
        check_points([[float("nan"), 5]], None, (HEIGHT, WIDTH))


# -- row 10: non-finite numbers are clear prompt errors, never NaN ----------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    ({"score_threshold": float("nan")}, "score_threshold"),
    ({"score_threshold": 1.5}, "score_threshold"),
    ({"mask_threshold": float("inf")}, "mask_threshold"),
    ({"exemplar_boxes": [[0, 0, 1e39, 5]]}, "far outside"),
    ({"exemplar_boxes": [[0, 0, float("nan"), 5]]}, "finite"),
])
def test_segment_refuses_non_finite_numbers(engine, kwargs, match):
    with pytest.raises(PromptError, match=match):
        engine._segment_request(_image(4), ["a"], kwargs.get("exemplar_boxes"), None,
                                kwargs.get("score_threshold", 0.5), kwargs.get("mask_threshold", 0.5))


@pytest.mark.parametrize("kwargs, match", [
    ({"points": [[1e39, 5]], "point_labels": [1]}, "outside"),
    ({"points": [[float("inf"), 5]], "point_labels": [1]}, "finite"),
    ({"box": [0, 0, 1e39, 5]}, "far outside"),
    ({"box": [0, float("nan"), 10, 5]}, "finite"),
    ({"points": [[5, 5]], "point_labels": [1], "mask_input": np.full((8, 8), np.nan, np.float32)}, "mask_input"),
    ({"points": [[5, 5]], "point_labels": [1], "mask_input": np.full((8, 8), 1e39)}, "mask_input"),
])
def test_refine_refuses_non_finite_numbers(engine, kwargs, match):
    with pytest.raises(PromptError, match=match):
        engine.refine(_image(5), **kwargs)


def test_refine_with_prompts_at_the_edges_gives_finite_output(engine):
    result = engine.refine(_image(6), points=[[0, 0], [WIDTH, HEIGHT]], point_labels=[1, 0],
                           box=[-3, -3, WIDTH + 3, HEIGHT + 3])
    assert np.isfinite(result.score) and np.isfinite(result.low_res_logits).all()


# -- row 2: pixel limit from measured memory, and the admission budget ------------------------------------


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` RGB but carries almost no data: cheap to send, and
    expensive for whoever decodes it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + \
        chunk(b"IEND", b"")


def test_default_pixel_limit_refuses_the_64_megapixel_png_from_its_header():
    assert DEFAULT_MAX_PIXELS == 25_000_000  # chosen from bench/engine_memory.py figures, see images.py
    with pytest.raises(ImageError, match="over the limit of 25000000") as caught:
        load_image(_png_header_only(8000, 7999))
    assert isinstance(caught.value, AdmissionError) and caught.value.limit == "max_pixels"


def test_admission_names_each_limit():
    limits = AdmissionLimits(max_pixels=10**9, max_phrases=4, max_exemplar_boxes=2, max_request_bytes=2 << 30)
    cases = [({"pixels": 10**9 + 1, "phrases": 1}, "max_pixels"), ({"pixels": 100, "phrases": 5}, "max_phrases"),
             ({"pixels": 100, "phrases": 1, "exemplar_boxes": 3}, "max_exemplar_boxes"),
             ({"pixels": 64_000_000, "phrases": 4, "formats": ("rle", "png", "polygons")}, "max_request_bytes")]
    for kwargs, limit in cases:
        with pytest.raises(AdmissionError, match=limit) as caught:
            check_admission(limits, **kwargs)
        assert caught.value.limit == limit and caught.value.value > caught.value.maximum
    # Fewer formats and phrases on the same image fit, and formats make a request dearer.
    assert check_admission(limits, pixels=64_000_000, phrases=1) <= limits.max_request_bytes
    assert estimate_request_bytes(10**6, 3, ("rle", "png")) > estimate_request_bytes(10**6, 3, ("rle",))


def test_engine_refuses_an_over_budget_request_before_the_worker(tiny_checkpoint):
    pixels = HEIGHT * WIDTH
    budget = int(estimate_request_bytes(pixels, 2, ("rle",)))  # two phrases in rle fit, three do not
    options = EngineOptions(admission=AdmissionLimits(max_request_bytes=budget))
    with Sam3Engine.from_pretrained(tiny_checkpoint, device="cpu", options=options, with_tracker=False) as eng:
        with pytest.raises(AdmissionError, match="max_request_bytes") as caught:
            eng.segment(_image(7), ["a", "b", "c"], output_formats=["rle"])
        assert caught.value.limit == "max_request_bytes"
        with pytest.raises(AdmissionError, match="max_phrases"):
            eng.segment(_image(7), [f"p{i}" for i in range(33)])
        assert eng._worker.stats().requests == 0  # nothing reached the worker
        assert len(eng.segment(_image(7), ["a", "b"], output_formats=["rle"], score_threshold=1.0)) == 2


def test_too_many_masks_fails_only_that_request_in_a_shared_batch(tiny_checkpoint):
    pixels = HEIGHT * WIDTH
    budget = int(estimate_request_bytes(pixels, 1)) + 1  # one mask per phrase at most
    limits = AdmissionLimits(max_request_bytes=budget)
    assert max_masks_per_phrase(limits, pixels=pixels, phrases=1) == 1
    with Sam3Engine.from_pretrained(tiny_checkpoint, device="cpu", with_tracker=False,
                                    options=EngineOptions(admission=limits)) as eng:
        image = _image(8)
        greedy = eng._segment_request(image, ["a"], None, None, 0.0, 0.5)  # keeps all 8 queries
        modest = eng._segment_request(image, ["a"], None, None, 1.0, 0.5)  # keeps none
        eng._handler([greedy, modest])
        with pytest.raises(AdmissionError, match="at most 1 per phrase"):
            greedy.future.result(timeout=0)
        assert len(modest.future.result(timeout=0)[0]) == 0


# -- row 3: thin images keep their layout; a bad item fails only its own request --------------------------


@pytest.mark.parametrize("height", [1, 2, 3])
def test_thin_images_are_read_channels_last(engine, monkeypatch, height):
    seen = []
    encoder = engine._handler.detector
    real = encoder.get_vision_features

    def spy(pixel_values):
        seen.append(pixel_values.float().numpy().copy())
        return real(pixel_values=pixel_values)

    monkeypatch.setattr(encoder, "get_vision_features", spy)
    pixels = np.zeros((height, 120, 3), np.uint8)
    pixels[:, :60, 0] = 255  # left half red, right half blue
    pixels[:, 60:, 2] = 255
    engine.cache.clear()
    result = engine.segment(pixels, ["a"], score_threshold=0.0)[0]
    assert result.masks.shape[1:] == (height, 120)
    values = seen[-1][0]  # (3, S, S) as the vision encoder got it
    side = values.shape[-1]
    left, right = values[:, :, : side // 4].mean(axis=(1, 2)), values[:, :, -side // 4 :].mean(axis=(1, 2))
    assert left[0] > left[2] + 1 and right[2] > right[0] + 1, (left, right)


def test_one_pixel_high_image_among_seven_does_not_fail_the_batch(engine):
    images = [_image(20 + i) for i in range(7)] + [np.full((1, 100, 3), 128, np.uint8)]
    requests = [engine._segment_request(image, ["a"], None, None, 0.5, 0.5) for image in images]
    engine._handler(requests)
    for request, image in zip(requests, images):
        assert request.future.result(timeout=0)[0].image_size == image.shape[:2]


class _FailsOnWidth:
    """An image processor that cannot take images of one width (stands in for any per-image failure)."""

    def __init__(self, inner, width: int) -> None:
        self.inner, self.width = inner, width

    def __call__(self, images, **kwargs):
        if any(np.asarray(image).shape[1] == self.width for image in images):
            raise RuntimeError(f"cannot preprocess an image {self.width} px wide")
        return self.inner(images=images, **kwargs)


class _Processor:
    def __init__(self, inner, width: int) -> None:
        self.image_processor = _FailsOnWidth(inner.image_processor, width)
        self.tokenizer = inner.tokenizer


def test_an_image_that_fails_encoding_fails_only_its_own_request(engine, monkeypatch):
    monkeypatch.setattr(engine._handler, "processor", _Processor(engine.processor, 77))
    good = [_image(30 + i) for i in range(3)]
    bad = _image(40, width=77)
    requests = [engine._segment_request(image, ["a"], None, None, 0.5, 0.5) for image in (*good, bad)]
    engine._handler(requests)
    for request, image in zip(requests, good):
        assert request.future.result(timeout=0)[0].image_size == image.shape[:2]
    with pytest.raises(RuntimeError, match="77 px wide"):
        requests[-1].future.result(timeout=0)
