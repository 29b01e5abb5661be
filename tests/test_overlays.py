"""Tests for sam3_core.drawing: palette, blending, label legibility, crops, edge cases (anchors: test_anchors.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from mask_shapes import disk, random_masks

from sam3_core import drawing as ov
from sam3_core import label_boxes as ov_labels
from sam3_core.errors import UsageError

GREY = 128


def _image(height: int = 240, width: int = 320, value: int = GREY) -> np.ndarray:
    return np.full((height, width, 3), value, dtype=np.uint8)


def _gradient(height: int = 240, width: int = 320) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) % 256], axis=-1).astype(np.uint8)


# ------------------------------------------------------------------------------- palette
def test_palette_is_stable_and_distinct() -> None:
    assert ov.color_for_id(3) == ov.color_for_id(3)
    assert ov.color_for_id(3 + len(ov.PALETTE)) == ov.color_for_id(3)
    colours = np.array(ov.PALETTE, dtype=float)
    assert len(set(ov.PALETTE)) == len(ov.PALETTE) >= 12
    for a, b in itertools.combinations(range(len(colours)), 2):
        assert np.linalg.norm(colours[a] - colours[b]) >= 60, (ov.PALETTE[a], ov.PALETTE[b])


def test_same_id_same_colour_across_renders() -> None:
    mask = np.zeros((240, 320), bool)
    mask[40:200, 40:280] = True
    other = np.zeros_like(mask)
    other[0:10, 0:10] = True
    first = np.asarray(ov.render_masks(_image(), mask[None], [7], labels=False))
    second = np.asarray(ov.render_masks(_image(), np.stack([other, mask]), [2, 7], labels=False))
    assert np.array_equal(first[120, 60], second[120, 60])
    third = np.asarray(ov.render_masks(_image(), mask[None], [8], labels=False))
    assert not np.array_equal(first[120, 60], third[120, 60])


# ------------------------------------------------------------------------------ blending
def _two_masks() -> tuple[np.ndarray, list[int]]:
    a = disk((240, 320), 80, 90, 50)
    b = np.zeros((240, 320), bool)
    b[140:220, 180:300] = True
    return np.stack([a, b]), [1, 4]


def test_blend_only_changes_masked_pixels_without_labels() -> None:
    image = _gradient()
    masks, ids = _two_masks()
    out = np.asarray(ov.render_masks(image, masks, ids, labels=False))
    changed = np.any(out != image, axis=-1)
    union = masks.any(axis=0)
    assert not np.any(changed & ~union)
    assert changed[union].mean() > 0.95


def test_blend_values_and_outline() -> None:
    image = _image()
    masks, ids = _two_masks()
    out = np.asarray(ov.render_masks(image, masks, ids, alpha=0.5, labels=False, outline_width=2))
    colour = np.array(ov.color_for_id(4), float)
    expected = np.rint(GREY * 0.5 + colour * 0.5)
    assert np.array_equal(out[180, 200], expected)  # interior of mask id 4
    assert np.array_equal(out[140, 200], colour)  # on its outline
    assert np.array_equal(out[139, 200], [GREY] * 3)  # just outside: untouched


def test_labels_only_change_pixels_near_anchors() -> None:
    image = _gradient()
    masks, ids = _two_masks()
    out = np.asarray(ov.render_masks(image, masks, ids, font_size=16))
    changed = np.any(out != image, axis=-1) & ~masks.any(axis=0)
    anchors = [ov.label_anchor(m) for m in masks]
    ys, xs = np.nonzero(changed)
    near = np.zeros(len(ys), bool)
    for x, y in anchors:
        near |= (np.abs(xs - x) <= 48) & (np.abs(ys - y) <= 48)
    assert near.all()


def test_input_image_not_modified() -> None:
    image = _gradient()
    before = image.copy()
    masks, ids = _two_masks()
    ov.render_masks(image, masks, ids)
    ov.render_single_mask(image, masks[0], 1)
    ov.zoomed_crop(image, masks[1])
    assert np.array_equal(image, before)


# --------------------------------------------------------------------------------- labels
@pytest.mark.parametrize("colour", [*ov.PALETTE, (255, 255, 255), (0, 0, 0), (118, 118, 118)])
def test_text_colour_contrast(colour: tuple[int, int, int]) -> None:
    assert ov.contrast_ratio(ov.text_color_for(colour), colour) >= 4.5


def test_contrast_ratio_reference_values() -> None:
    assert ov.contrast_ratio((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)
    assert ov.contrast_ratio((90, 90, 90), (90, 90, 90)) == pytest.approx(1.0)
    assert ov.text_color_for((255, 255, 255)) == (0, 0, 0)
    assert ov.text_color_for((0, 0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("background", [0, 128, 255])
@pytest.mark.parametrize("mask_id", [1, 3, 10, 16, 18])
def test_label_drawn_with_box_and_text_colours(background: int, mask_id: int) -> None:
    mask = disk((300, 300), 150, 150, 90)
    out = np.asarray(ov.render_masks(_image(300, 300, background), mask[None], [mask_id], font_size=24))
    x, y = ov.label_anchor(mask)
    patch = out[y - 20 : y + 20, x - 20 : x + 20].reshape(-1, 3)
    box = ov.color_for_id(mask_id)
    ink = ov.text_color_for(box)
    assert np.all(patch == box, axis=1).sum() > 50, "label box colour not found"
    assert np.all(patch == ink, axis=1).sum() > 10, "label text colour not found"


def _label_size(image: np.ndarray, mask: np.ndarray, mask_id: int) -> tuple[int, int]:
    """Width and height of the region a label changes (labelled render vs unlabelled render)."""
    plain = np.asarray(ov.render_masks(image, mask, [mask_id], labels=False))
    labelled = np.asarray(ov.render_masks(image, mask, [mask_id]))
    ys, xs = np.nonzero(np.any(labelled != plain, axis=-1))
    return xs.max() - xs.min() + 1, ys.max() - ys.min() + 1


@pytest.mark.parametrize("corner", [(0, 0), (0, 317), (237, 0), (237, 317)])
def test_label_kept_inside_image(corner: tuple[int, int]) -> None:
    image = _image()
    corner_mask = np.zeros((240, 320), bool)
    corner_mask[corner[0] : corner[0] + 3, corner[1] : corner[1] + 3] = True
    centre_mask = np.zeros_like(corner_mask)
    centre_mask[120:123, 160:163] = True
    # The whole label box is visible at the corner, not clipped.
    assert _label_size(image, corner_mask, 12) == _label_size(image, centre_mask, 12)


def test_label_size_scales_with_image() -> None:
    small = _image(200, 200)
    large = _image(1000, 1000)
    w_small, _ = _label_size(small, disk((200, 200), 100, 100, 30), 5)
    w_large, _ = _label_size(large, disk((1000, 1000), 500, 500, 150), 5)
    assert w_large > 2 * w_small


# ------------------------------------------------------------------------- single / final
def test_render_single_mask_dims_outside_only() -> None:
    image = _image(value=200)
    mask = disk((240, 320), 120, 160, 60)
    out = np.asarray(ov.render_single_mask(image, mask, 9, dim=0.5))
    assert np.array_equal(out[5, 5], [100, 100, 100])
    assert out.shape == image.shape


def test_render_final_with_and_without_ids() -> None:
    image = _gradient()
    masks, _ = _two_masks()
    plain = np.asarray(ov.render_final(image, masks))
    labelled = np.asarray(ov.render_final(image, masks, ids=[1, 4]))
    union = masks.any(axis=0)
    assert not np.any(np.any(plain != image, axis=-1) & ~union)
    assert np.any(labelled != plain)  # label boxes
    empty = np.asarray(ov.render_final(image, np.zeros((0, 240, 320), bool)))
    assert np.array_equal(empty, image)


# --------------------------------------------------------------------------------- crops
def _outline_bbox(crop: np.ndarray, colour=(255, 230, 0)) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(np.all(crop == colour, axis=-1))
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_zoomed_crop_contains_mask_and_respects_min_size() -> None:
    image = _gradient(480, 640)
    mask = np.zeros((480, 640), bool)
    mask[200:240, 300:360] = True  # 60 x 40 box
    crop = np.asarray(ov.zoomed_crop(image, mask, context=0.5, min_size=448))
    assert max(crop.shape[:2]) >= 448
    # Box 60 x 40 plus 30 / 20 px context per side -> 120 x 80, scaled by 448 / 120.
    assert crop.shape[:2] == (round(80 * 448 / 120), 448)
    x0, y0, x1, y1 = _outline_bbox(crop)
    scale = 448 / 120
    assert abs(x0 - 30 * scale) <= 3 and abs(x1 - 90 * scale) <= 3
    assert abs(y0 - 20 * scale) <= 3 and abs(y1 - 60 * scale) <= 3


def test_zoomed_crop_clamped_and_never_downscaled() -> None:
    image = _gradient(480, 640)
    mask = np.zeros((480, 640), bool)
    mask[0:400, 0:600] = True
    crop = ov.zoomed_crop(image, mask, context=0.5, min_size=448)
    assert crop.size == (640, 480)


def test_zoomed_crop_tiny_and_empty_masks() -> None:
    image = _gradient(100, 120)
    one = np.zeros((100, 120), bool)
    one[50, 60] = True
    crop = ov.zoomed_crop(image, one, min_size=300, min_margin=10)
    assert crop.size == (300, 300)  # 21 x 21 crop, upscaled
    assert _outline_bbox(np.asarray(crop))[0] > 0
    empty = ov.zoomed_crop(image, np.zeros((100, 120), bool), min_size=300)
    assert empty.size == (300, 250)


# ---------------------------------------------------------------------------- edge cases
def test_one_pixel_and_empty_masks_render() -> None:
    image = _image(64, 64)
    one = np.zeros((64, 64), bool)
    one[10, 10] = True
    empty = np.zeros((64, 64), bool)
    out = np.asarray(ov.render_masks(image, np.stack([one, empty]), [1, 2]))
    assert not np.array_equal(out[10, 10], image[10, 10])
    out_empty = np.asarray(ov.render_masks(image, empty, [2]))
    assert np.array_equal(out_empty, image)  # empty mask: no tint, no label
    assert ov.render_single_mask(image, one, 1).size == (64, 64)


def test_grayscale_and_pil_inputs() -> None:
    from PIL import Image

    mask = disk((50, 70), 25, 35, 10)
    grey = np.full((50, 70), 90, np.uint8)
    assert ov.render_masks(grey, mask, [1]).size == (70, 50)
    assert ov.render_masks(Image.fromarray(grey), mask, [1]).mode == "RGB"


def test_bad_inputs_raise() -> None:
    image = _image(50, 60)
    with pytest.raises(UsageError):
        ov.render_masks(image, np.zeros((1, 40, 60), bool), [1])
    with pytest.raises(UsageError):
        ov.render_masks(image, np.zeros((2, 50, 60), bool), [1])
    with pytest.raises(UsageError):
        ov.render_masks(image.astype(np.float32), np.zeros((1, 50, 60), bool), [1])


def test_renders_30_masks_at_1024() -> None:
    """Many large masks at once (the speed of this lives in no test: no timed assertions on shared CI)."""
    rng = np.random.default_rng(1)
    image = _gradient(1024, 1024)
    masks = np.stack(
        [disk((1024, 1024), *rng.integers(0, 1024, size=2), rng.integers(5, 300)) for _ in range(30)]
    )
    out = ov.render_masks(image, masks, list(range(30)))
    assert out.size == (1024, 1024)
    changed = np.any(np.asarray(out.convert("RGB")) != image, axis=-1)
    assert changed[masks.any(axis=0)].mean() > 0.9  # the masks are tinted
    assert changed[~masks.any(axis=0)].mean() < 0.05  # outlines and labels stay (nearly) inside


# ------------------------------------------------------------- fast drawing vs a plain reference
#: How far the table-driven drawing may stray from the float reference: at most this fraction of pixels
#: may differ by more than 2 levels in any channel (overlapping masks are rounded after each blend).
MAX_FAR_FRACTION = 0.001


def _reference_render(image: np.ndarray, masks: np.ndarray, ids: list[int], alpha: float, outline: int,
                      font_size: int | None, labels: bool) -> np.ndarray:
    """The plain way: blend in float32 over whole boolean masks, round once, labels at the same anchors."""
    from PIL import Image

    canvas = image.astype(np.float32)
    order = np.argsort(-masks.sum(axis=(1, 2)), kind="stable")
    for index in order:
        paint = np.asarray(ov.color_for_id(ids[index]), np.float32)
        canvas[masks[index]] = canvas[masks[index]] * (1.0 - alpha) + paint * alpha
        canvas[ov.inner_outline(masks[index], outline)] = paint
    result = Image.fromarray(np.rint(canvas).astype(np.uint8))
    if labels:
        size = font_size or ov_labels.default_font_size(*image.shape[:2])
        ov_labels.draw_labels(result, ov.label_anchors(masks), ids, order[::-1], size)
    return np.asarray(result)


def _far_fraction(first: np.ndarray, second: np.ndarray) -> float:
    return float((np.abs(first.astype(int) - second.astype(int)).max(axis=-1) > 2).mean())


@pytest.mark.parametrize("seed,speckle", [(0, 0.0), (1, 0.0), (2, 0.5)])
@pytest.mark.parametrize("labels", [False, True])
def test_fast_render_matches_float_reference(seed: int, speckle: float, labels: bool) -> None:
    image = _gradient(240, 320)
    masks = random_masks(seed, (240, 320), 8, speckle)
    ids = list(range(1, 9))
    fast = np.asarray(ov.render_masks(image, masks, ids, outline_width=2, labels=labels))
    reference = _reference_render(image, masks, ids, 0.45, 2, None, labels)
    assert _far_fraction(fast, reference) <= MAX_FAR_FRACTION
    if not labels:  # the tint alone: at most one level apart, and identical where masks do not overlap
        assert np.abs(fast.astype(int) - reference).max() <= 1
        single = masks.sum(axis=0) <= 1
        assert np.array_equal(fast[single], reference[single])


def test_fast_single_mask_matches_float_reference() -> None:
    image = _gradient(240, 320)
    mask = random_masks(3, (240, 320), 1)[0]
    dimmed = image.astype(np.float32)
    dimmed[~mask] *= 1.0 - 0.35
    reference = _reference_render(np.rint(dimmed).astype(np.uint8), mask[None], [5], 0.4,
                                  ov._default_outline_width(240, 320), None, True)
    fast = np.asarray(ov.render_single_mask(image, mask, 5))
    assert np.array_equal(fast, reference)  # one mask: no overlap, so no rounding differs


def test_given_anchors_are_used_and_checked() -> None:
    image = _image()
    masks, ids = _two_masks()
    anchors = ov.label_anchors(masks)
    assert np.array_equal(np.asarray(ov.render_masks(image, masks, ids, anchors=anchors)),
                          np.asarray(ov.render_masks(image, masks, ids)))
    moved = [(20, 20), anchors[1]]
    assert not np.array_equal(np.asarray(ov.render_masks(image, masks, ids, anchors=moved)),
                              np.asarray(ov.render_masks(image, masks, ids)))
    single = np.asarray(ov.render_single_mask(image, masks[0], 1, anchor=(20, 20)))
    assert np.all(single[5:35, 5:35] == ov.color_for_id(1), axis=-1).sum() > 50  # the label box is at (20, 20)
    assert not np.array_equal(single, np.asarray(ov.render_single_mask(image, masks[0], 1)))
    with pytest.raises(UsageError, match="anchors"):
        ov.render_masks(image, masks, ids, anchors=anchors[:1])
