"""Tests for sam3_core.anchors (through sam3_core.drawing, which re-exports it): the distance transform, the erosion
depth and label anchors on awkward shapes."""

from __future__ import annotations

import numpy as np
import pytest
from mask_shapes import disk, random_masks

from sam3_core import anchors as ov_anchors
from sam3_core import drawing as ov


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
    return disk(shape, 150, 200, 120) & ~disk(shape, 150, 200, 80)


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
    return disk(shape, 80, 80, 20) | disk(shape, 200, 300, 60)


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
        mask |= disk(mask.shape, *rng.integers(5, 40, size=2), rng.integers(4, 15))
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


@pytest.mark.parametrize("seed", range(4))
def test_erosion_depth_close_to_euclidean(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = np.zeros((60, 70), bool)
    for _ in range(4):
        mask |= disk(mask.shape, *rng.integers(5, 60, size=2), rng.integers(4, 25))
    exact = _brute_distance(mask)
    depth = ov_anchors.erosion_depth(mask)
    assert np.all(depth[~mask] == 0) and np.all(depth[mask] >= 1)
    assert np.all(np.abs(depth - exact) <= 0.11 * exact + 1.0)  # octagonal metric: 11 % plus one pixel


@pytest.mark.parametrize("seed", range(6))
def test_anchor_near_the_deepest_point_ofrandom_masks(seed: int) -> None:
    # within the anchor grid (no block reduction) and on a larger, block-reduced mask
    for shape in ((60, 64), (480, 640)):
        mask = random_masks(seed, shape, 3).any(axis=0)
        x, y = ov.label_anchor(mask)
        exact = ov.distance_transform(mask)
        assert mask[y, x] and exact[y, x] >= 0.8 * exact.max() - 1, (shape, exact[y, x], exact.max())
