"""Masks drawn for the overlay and anchor tests: discs, and random sets of them."""

from __future__ import annotations

import numpy as np


def disk(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def random_masks(seed: int, shape: tuple[int, int], count: int, speckle: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.stack([disk(shape, *rng.integers(0, min(shape), size=2), rng.integers(3, min(shape) // 2))
                      for _ in range(count)])
    if speckle:  # fragmented masks like a random-weight model's
        masks &= rng.random(masks.shape) > speckle
    return masks
