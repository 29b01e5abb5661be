"""Tests for sam3_core.postprocess: RLE, boxes and polygons (CPU only); overlaps and NMS: test_mask_overlaps.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from sam3_core.errors import InputError, UsageError
from sam3_core.postprocess import mask_to_polygons, masks_to_boxes, masks_to_rle, rle_to_mask

H, W = 40, 50


def _blank(n: int = 1, h: int = H, w: int = W) -> np.ndarray:
    return np.zeros((n, h, w), dtype=bool)


def _disc(cy: float, cx: float, r: float, h: int = H, w: int = W) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def _decode_polygons(polygons: list[list[float]], h: int, w: int) -> np.ndarray:
    if not polygons:
        return np.zeros((h, w), dtype=bool)
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))).astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


# ------------------------------------------------------------------------------------------------
# RLE
# ------------------------------------------------------------------------------------------------


def test_rle_round_trip_random_masks() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((5, 23, 31)) < 0.4
    masks[2] = False  # an empty mask among them
    rles = masks_to_rle(masks)
    assert len(rles) == 5
    for rle, mask in zip(rles, masks, strict=True):
        assert rle["size"] == [23, 31]
        assert isinstance(rle["counts"], str)
        np.testing.assert_array_equal(rle_to_mask(rle), mask)
    assert rle_to_mask(rles[0]).dtype == bool


def test_rle_is_json_serialisable_and_matches_pycocotools() -> None:
    masks = _blank(2)
    masks[0, 3:9, 4:20] = True
    rles = masks_to_rle(masks)
    back = json.loads(json.dumps(rles))
    np.testing.assert_array_equal(rle_to_mask(back[0]), masks[0])
    reference = mask_utils.encode(np.asfortranarray(masks[0].astype(np.uint8)))
    assert back[0]["counts"] == reference["counts"].decode("utf-8")
    assert float(mask_utils.area(reference)) == 6 * 16


def test_rle_empty_batch_and_empty_mask() -> None:
    assert masks_to_rle(_blank(0)) == []
    (rle,) = masks_to_rle(_blank(1, 4, 6))
    assert rle["size"] == [4, 6]
    assert not rle_to_mask(rle).any()
    assert rle_to_mask(rle).shape == (4, 6)


def test_rle_to_mask_accepts_bytes_and_uncompressed_counts() -> None:
    mask = np.zeros((3, 4), dtype=bool)
    mask[1:3, 1] = True
    mask[0, 3] = True
    (rle,) = masks_to_rle(mask[None])
    from_bytes = {"size": rle["size"], "counts": rle["counts"].encode("utf-8")}
    np.testing.assert_array_equal(rle_to_mask(from_bytes), mask)
    # column-major runs: col0 = 000, col1 = 011, col2 = 000, col3 = 100 -> 4 bg, 2 fg, 3 bg, 1 fg, 2 bg
    uncompressed = {"size": [3, 4], "counts": [4, 2, 3, 1, 2]}
    np.testing.assert_array_equal(rle_to_mask(uncompressed), mask)


def test_rle_to_mask_rejects_malformed_input() -> None:
    with pytest.raises(InputError):
        rle_to_mask({"counts": "abc"})
    with pytest.raises(InputError):
        rle_to_mask({"size": [3, 4], "counts": [4, 2]})  # runs sum to 6, not 12
    with pytest.raises(InputError):
        rle_to_mask({"size": [3, 4], "counts": 12})


def test_rle_from_torch_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    masks = rng.random((3, 10, 12)) < 0.5
    assert masks_to_rle(torch.from_numpy(masks)) == masks_to_rle(masks)


# ------------------------------------------------------------------------------------------------
# boxes
# ------------------------------------------------------------------------------------------------


def test_boxes_hand_worked_and_exclusive_edges() -> None:
    masks = _blank(4, 10, 12)
    masks[0, 2:5, 3:7] = True  # rows 2..4, cols 3..6 -> x2 = 7, y2 = 5
    masks[1, 0, 0] = True  # one pixel at the origin
    masks[2, 9, 11] = True  # one pixel at the far corner -> x2 = W, y2 = H
    boxes = masks_to_boxes(masks)  # mask 3 stays empty
    assert isinstance(boxes, np.ndarray)
    assert boxes.dtype == np.float32
    expected = [[3, 2, 7, 5], [0, 0, 1, 1], [11, 9, 12, 10], [0, 0, 0, 0]]
    np.testing.assert_array_equal(boxes, np.array(expected, dtype=np.float32))


def test_boxes_match_pycocotools_to_bbox() -> None:
    rng = np.random.default_rng(2)
    masks = _blank(6, 30, 45)
    for i in range(5):
        y0, x0 = rng.integers(0, 20), rng.integers(0, 35)
        masks[i] = rng.random((30, 45)) < 0.05
        masks[i, y0 : y0 + 5, x0 : x0 + 7] = True
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    xywh = mask_utils.toBbox(rles)
    expected = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    np.testing.assert_array_equal(masks_to_boxes(masks), expected.astype(np.float32))
    np.testing.assert_array_equal(masks_to_boxes(masks)[5], [0, 0, 0, 0])


def test_boxes_torch_and_empty_batch() -> None:
    masks = _blank(2, 8, 9)
    masks[0, 1:3, 4:6] = True
    out = masks_to_boxes(torch.from_numpy(masks))
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.float32
    np.testing.assert_array_equal(out.numpy(), masks_to_boxes(masks))
    assert masks_to_boxes(_blank(0)).shape == (0, 4)


def test_boxes_treat_nonzero_as_foreground_and_check_ndim() -> None:
    masks = np.zeros((1, 5, 5), dtype=np.uint8)
    masks[0, 1, 2] = 255
    np.testing.assert_array_equal(masks_to_boxes(masks), [[2, 1, 3, 2]])
    with pytest.raises(UsageError):
        masks_to_boxes(np.zeros((5, 5), dtype=bool))


# ------------------------------------------------------------------------------------------------
# polygons
# ------------------------------------------------------------------------------------------------


def test_polygon_rectangle_is_four_corners() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:5, 3:7] = True
    assert mask_to_polygons(mask) == [[3.0, 2.0, 7.0, 2.0, 7.0, 5.0, 3.0, 5.0]]


@pytest.mark.parametrize("shape", ["disc", "l_shape", "pixel"])
def test_polygon_round_trip_single_component(shape: str) -> None:
    mask = np.zeros((H, W), dtype=bool)
    if shape == "disc":
        mask = _disc(20, 25, 12)
    elif shape == "l_shape":
        mask[5:30, 5:12] = True
        mask[23:30, 5:35] = True
    else:
        mask[7, 9] = True
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 1
    assert len(polygons[0]) % 2 == 0
    assert len(polygons[0]) >= 6
    decoded = _decode_polygons(polygons, H, W)
    assert _iou(decoded, mask) >= 0.9
    np.testing.assert_array_equal(decoded, mask)  # corner tracing is exact for hole-free shapes


def test_polygon_l_shape_has_six_corners() -> None:
    mask = np.zeros((H, W), dtype=bool)
    mask[5:30, 5:12] = True
    mask[23:30, 5:35] = True
    (polygon,) = mask_to_polygons(mask)
    assert polygon == [5.0, 5.0, 12.0, 5.0, 12.0, 23.0, 35.0, 23.0, 35.0, 30.0, 5.0, 30.0]


def test_polygon_two_components_give_two_polygons() -> None:
    mask = _disc(10, 10, 5) | _disc(28, 38, 7)
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 2
    first = _decode_polygons(polygons[:1], H, W)
    np.testing.assert_array_equal(first, _disc(10, 10, 5))  # raster order: upper-left one first
    assert _iou(_decode_polygons(polygons, H, W), mask) >= 0.9


def test_polygon_ring_gives_outer_boundary_only() -> None:
    outer = _disc(20, 25, 15)
    ring = outer & ~_disc(20, 25, 7)
    polygons = mask_to_polygons(ring)
    assert len(polygons) == 1
    decoded = _decode_polygons(polygons, H, W)
    np.testing.assert_array_equal(decoded, outer)  # the hole comes back filled
    assert _iou(decoded, ring) < 1.0


def test_polygon_diagonal_pixels_are_one_component() -> None:
    mask = np.zeros((6, 6), dtype=bool)
    mask[1, 1] = mask[2, 2] = True
    mask[4, 0] = True  # not touching the others
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 2
    np.testing.assert_array_equal(_decode_polygons(polygons, 6, 6), mask)


def test_polygon_random_masks_cover_every_pixel() -> None:
    rng = np.random.default_rng(3)
    for density in (0.1, 0.4, 0.7):
        mask = rng.random((30, 35)) < density
        decoded = _decode_polygons(mask_to_polygons(mask), 30, 35)
        assert not (mask & ~decoded).any()  # only filled holes may be added


def test_polygon_min_area_and_empty() -> None:
    mask = np.zeros((H, W), dtype=bool)
    mask[1, 1] = True
    mask[10:20, 10:20] = True
    assert len(mask_to_polygons(mask)) == 2
    (big,) = mask_to_polygons(mask, min_area=2)
    assert big == [10.0, 10.0, 20.0, 10.0, 20.0, 20.0, 10.0, 20.0]
    assert mask_to_polygons(np.zeros((H, W), dtype=bool)) == []


def test_polygon_simplification_reduces_vertices() -> None:
    mask = _disc(20, 25, 15)
    (exact,) = mask_to_polygons(mask)
    (simple,) = mask_to_polygons(mask, tolerance=1.0)
    assert len(simple) < len(exact) // 2
    assert _iou(_decode_polygons([simple], H, W), mask) >= 0.9
    # every kept vertex is one of the exact polygon's corners
    corners = {tuple(p) for p in np.reshape(exact, (-1, 2))}
    assert all(tuple(p) in corners for p in np.reshape(simple, (-1, 2)))


def test_polygon_torch_input_matches_numpy() -> None:
    mask = _disc(20, 25, 9)
    assert mask_to_polygons(torch.from_numpy(mask)) == mask_to_polygons(mask)
