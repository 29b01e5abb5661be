"""``.plot()`` / ``.save()`` of the engine's results: the overlay, its legend of phrases and ids, the files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import random_image
from PIL import Image

from sam3_core.drawing import color_for_id, label_anchor, render_masks
from sam3_core.errors import UsageError
from sam3_core.plotting import plot_results
from sam3_core.postprocess import rle_to_mask
from sam3_core.results import PhraseResult, SegmentationResults

H, W = 120, 160


def disc(cx: float, cy: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2


def phrase_result(phrase: str, masks: list[np.ndarray], scores: list[float], presence: float = 0.9) -> PhraseResult:
    stack = np.stack(masks) if masks else np.zeros((0, H, W), bool)
    boxes = np.array([[np.nonzero(m)[1].min(), np.nonzero(m)[0].min(), np.nonzero(m)[1].max() + 1,
                       np.nonzero(m)[0].max() + 1] for m in stack], np.float32).reshape(-1, 4)
    return PhraseResult(phrase, stack, boxes, np.array(scores, np.float32), presence, (H, W))


@pytest.fixture
def results() -> SegmentationResults:
    image = np.full((H, W, 3), 90, np.uint8)  # flat grey: no palette colour occurs in it by chance
    return SegmentationResults(image, [
        phrase_result("dog", [disc(40, 50, 22), disc(100, 70, 30)], [0.91, 0.74]),
        phrase_result("red car", [disc(135, 25, 15)], [0.66]),
        phrase_result("unicorn", [], [], presence=0.03)])


def colour_pixels(picture: np.ndarray, color: tuple[int, int, int]) -> int:
    return int(np.all(picture == np.asarray(color, np.uint8), axis=-1).sum())


def test_plot_adds_a_legend_with_each_ids_colour_and_keeps_the_image_at_the_top_left(results):
    picture = results.plot()
    assert picture.mode == "RGB" and picture.width > W and picture.height >= H
    array = np.asarray(picture)
    overlay = np.asarray(results.plot(legend=False))
    assert overlay.shape == (H, W, 3)
    assert np.array_equal(array[:H, :W], overlay)  # the legend is beside the image, never over it
    legend = array[:, W:]
    for mask_id in (1, 2, 3):
        swatch = colour_pixels(legend, color_for_id(mask_id))
        assert swatch >= 100, (mask_id, swatch)  # a filled swatch, not a stray pixel
    assert colour_pixels(legend, color_for_id(4)) == 0  # three instances, three swatches
    assert colour_pixels(legend, (120, 120, 120)) > 0  # the grey "unicorn: none" row
    ink = np.all(legend < 60, axis=-1).sum()
    assert ink > 50  # the phrase and score text


def test_masks_are_tinted_in_their_legend_colour_and_labelled_with_their_id(results):
    overlay = np.asarray(results.plot(legend=False)).astype(int)
    unlabelled = np.asarray(render_masks(results.image, np.concatenate([r.masks for r in results]), [1, 2, 3],
                                         labels=False, alpha=0.45)).astype(int)
    for mask_id, mask in zip((1, 2, 3), np.concatenate([r.masks for r in results])):
        inside = unlabelled[mask].mean(axis=0)
        towards = np.asarray(color_for_id(mask_id)) - 90
        assert np.dot(inside - 90, towards) > 0  # tinted towards the id's colour
        x, y = label_anchor(mask)
        window = (slice(max(0, y - 4), y + 5), slice(max(0, x - 4), x + 5))
        assert np.any(overlay[window] != unlabelled[window])  # a label is drawn at the mask's anchor


def test_save_png_and_json_agree_on_ids(results, tmp_path):
    png = results.save(tmp_path / "out.png")
    assert Image.open(png).size == results.plot().size
    document = json.loads(results.save(tmp_path / "out.json").read_text())
    assert document["image"] == {"height": H, "width": W}
    instances = [i for r in document["results"] for i in r["instances"]]
    assert [i["id"] for i in instances] == [1, 2, 3]
    assert np.array_equal(rle_to_mask(instances[2]["rle"]), results[1].masks[0])
    assert [r["phrase"] for r in document["results"]] == ["dog", "red car", "unicorn"]
    with pytest.raises(UsageError, match="format"):
        results.save(tmp_path / "out.unknown")


def test_phrase_result_plot_and_save_need_the_image(results, tmp_path):
    dog = results[0]
    assert dog.plot(results.image).width > W
    with pytest.raises(UsageError, match="needs the image"):
        dog.save(tmp_path / "dog.png")
    assert dog.save(tmp_path / "dog.png", results.image).exists()
    assert json.loads(dog.save(tmp_path / "dog.json").read_text())["results"][0]["phrase"] == "dog"


def test_results_of_another_image_are_refused(results):
    with pytest.raises(UsageError, match="the image they came from"):
        plot_results(np.zeros((H + 1, W, 3), np.uint8), list(results))


def test_engine_results_plot(engine):
    pixels = random_image(np.random.default_rng(77))
    found = SegmentationResults(pixels, engine.segment(pixels, ["cup", "woman"], score_threshold=0.2))
    picture = np.asarray(found.plot())
    assert picture.shape[0] >= pixels.shape[0] and picture.shape[1] > pixels.shape[1]
    total = sum(len(r) for r in found)
    assert total > 0  # random weights score about 0.25 on this image
    for mask_id in range(1, total + 1):
        assert colour_pixels(picture[:, pixels.shape[1]:], color_for_id(mask_id)) > 0
