"""Tests for sam3_core.drawing: label anchors, palette, blending, label legibility, crops, edge cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sam3_core import drawing as ov
from sam3_core.errors import UsageError

GREY = 128


def _image(height: int = 240, width: int = 320, value: int = GREY) -> np.ndarray:
    return np.full((height, width, 3), value, dtype=np.uint8)


def _gradient(height: int = 240, width: int = 320) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) % 256], axis=-1).astype(np.uint8)


def _disk(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _brute_distance(mask: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance to the nearest background pixel (outside the array is background)."""
    padded = np.pad(mask, 1)
    bg = np.argwhere(~padded).astype(float)
    fg = np.argwhere(padded).astype(float)
    out = np.zeros(padded.shape)
    if len(fg):
        d2 = ((fg[:, None, :] - bg[None, :, :]) ** 2).sum(-1).min(axis=1)
        out[tuple(fg.astype(int).T)] = np.sqrt(d2)
    return out[1:-1, 1:-1]


# ------------------------------------------------------------------------------- shapes
def _ring(shape=(300, 400)) -> np.ndarray:
    return _disk(shape, 150, 200, 120) & ~_disk(shape, 150, 200, 80)


def _l_shape(shape=(300, 400)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[20:280, 20:80] = True
    m[220:280, 20:380] = True
    return m


def _c_shape(shape=(300, 400)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[30:270, 60:120] = True
    m[30:90, 60:340] = True
    m[210:270, 60:340] = True
    return m


def _two_blobs(shape=(300, 400)) -> np.ndarray:
    return _disk(shape, 80, 80, 20) | _disk(shape, 200, 300, 60)


def _diagonal_line(shape=(300, 400)) -> np.ndarray:
    m = np.zeros(shape, bool)
    idx = np.arange(250)
    m[idx + 20, idx + 50] = True
    return m


def _long_thin_line(shape=(1024, 1024)) -> np.ndarray:
    m = np.zeros(shape, bool)
    idx = np.arange(900)
    m[idx + 50, idx + 60] = True  # 1 px wide: vanishes under majority downscaling
    return m


SHAPES = {
    "long_thin_line": _long_thin_line,
    "ring": _ring,
    "l_shape": _l_shape,
    "c_shape": _c_shape,
    "two_blobs": _two_blobs,
    "diagonal_line": _diagonal_line,
    "full": lambda shape=(300, 400): np.ones(shape, bool),
}


# ----------------------------------------------------------------------- distance / anchor
@pytest.mark.parametrize("seed", range(4))
def test_distance_transform_close_to_euclidean(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = np.zeros((40, 50), bool)
    for _ in range(4):
        mask |= _disk(mask.shape, *rng.integers(5, 40, size=2), rng.integers(4, 15))
    exact = _brute_distance(mask)
    approx = ov.distance_transform(mask)
    assert np.all(approx[~mask] == 0)
    assert np.all(approx[mask] >= 1)
    np.testing.assert_allclose(approx, exact, rtol=0.09, atol=1e-9)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_anchor_inside_mask_and_far_from_boundary(name: str) -> None:
    mask = SHAPES[name]()
    anchor = ov.label_anchor(mask)
    assert anchor is not None
    x, y = anchor
    assert mask[y, x], f"anchor {anchor} is outside the {name} mask"
    dist = ov.distance_transform(mask)
    assert dist[y, x] >= 0.75 * dist.max(), f"{name}: anchor depth {dist[y, x]:.1f} of {dist.max():.1f}"


def test_anchor_for_concave_shape_is_not_the_centroid() -> None:
    mask = _c_shape()
    cy, cx = np.argwhere(mask).mean(axis=0)
    assert not mask[round(cy), round(cx)], "test shape should have its centroid outside the mask"
    x, y = ov.label_anchor(mask)
    assert mask[y, x]


def test_anchor_on_large_mask_uses_thickest_part() -> None:
    # A thin bar attached to a big square: the label must go in the square.
    mask = np.zeros((1024, 1024), bool)
    mask[100:900, 100:600] = True
    mask[480:500, 600:1000] = True
    x, y = ov.label_anchor(mask)
    assert 200 <= x <= 500 and 300 <= y <= 700


def test_anchor_of_rectangle_is_central() -> None:
    mask = np.zeros((200, 300), bool)
    mask[50:150, 40:260] = True
    x, y = ov.label_anchor(mask)
    assert abs(x - 150) <= 5 and abs(y - 100) <= 3


def test_anchor_tiny_and_empty_masks() -> None:
    one = np.zeros((50, 60), bool)
    one[7, 42] = True
    assert ov.label_anchor(one) == (42, 7)
    assert ov.label_anchor(np.zeros((50, 60), bool)) is None


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
    a = _disk((240, 320), 80, 90, 50)
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
    mask = _disk((300, 300), 150, 150, 90)
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
    w_small, _ = _label_size(small, _disk((200, 200), 100, 100, 30), 5)
    w_large, _ = _label_size(large, _disk((1000, 1000), 500, 500, 150), 5)
    assert w_large > 2 * w_small


# ------------------------------------------------------------------------- single / final
def test_render_single_mask_dims_outside_only() -> None:
    image = _image(value=200)
    mask = _disk((240, 320), 120, 160, 60)
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

    mask = _disk((50, 70), 25, 35, 10)
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
        [_disk((1024, 1024), *rng.integers(0, 1024, size=2), rng.integers(5, 300)) for _ in range(30)]
    )
    out = ov.render_masks(image, masks, list(range(30)))
    assert out.size == (1024, 1024)
    changed = np.any(np.asarray(out.convert("RGB")) != image, axis=-1)
    assert changed[masks.any(axis=0)].mean() > 0.9  # the masks are tinted
    assert changed[~masks.any(axis=0)].mean() < 0.05  # outlines and labels stay (nearly) inside
