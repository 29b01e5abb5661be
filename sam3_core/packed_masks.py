"""Exact pixel counts of mask intersections on bit-packed masks, restricted to bounding boxes.

The agent's post-processing compares a phrase's instance masks with each other (overlap removal) and
with the masks already on the thread (duplicates). As a ``float32`` matrix product of full-resolution
masks that is a full pass over ``N x H x W`` floats per comparison (tens of milliseconds for a few
640x480 masks on a busy CPU). Here each ``(H, W)`` mask is packed once into ``(H, ceil(W / 64))``
``uint64`` words (8x less memory than ``bool``); an intersection is an AND and a popcount of words,
taken only inside the rows and words that the first mask occupies, and pairs whose occupied rows or
words do not meet are not touched at all (their intersection is 0). The counts are exact integers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sam3_core.errors import UsageError

# Set bits of every byte value: the popcount of numpy < 2.0, which lacks ``np.bitwise_count``.
_BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.int64)


def _popcount_sum(words: np.ndarray) -> np.ndarray:
    """Set bits of ``(K, R, C)`` ``uint64`` words summed per leading index: ``(K,)`` ``int64``."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words).sum(axis=(1, 2), dtype=np.int64)
    as_bytes = words.view(np.uint8).reshape(len(words), -1)
    return _BYTE_BITS[as_bytes].sum(axis=1)


def _span(occupied: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First True index and last True index + 1 of each row of ``(N, L)`` ``bool``; ``0, 0`` if none."""
    if occupied.size == 0:
        zeros = np.zeros(occupied.shape[0], dtype=np.int64)
        return zeros, zeros.copy()
    any_set = occupied.any(axis=1)
    start = np.argmax(occupied, axis=1)
    end = occupied.shape[1] - np.argmax(occupied[:, ::-1], axis=1)
    return np.where(any_set, start, 0), np.where(any_set, end, 0)


class PackedMasks:
    """``(N, H, W)`` ``bool`` masks packed along rows, with their areas and occupied rows and words.

    Attributes:
        words: ``(N, H, ceil(W / 64))`` ``uint64``; pixel ``(r, c)`` of mask ``n`` is a bit of
            ``words[n, r, c // 64]`` (the bit order inside a word is irrelevant to the counts).
        areas: ``(N,)`` ``int64`` pixels per mask.
        rows, cols: ``(N, 2)`` ``int64`` ``[first, last + 1]`` occupied rows and occupied words
            (``[0, 0]`` for an empty mask).
    """

    def __init__(self, masks: np.ndarray) -> None:
        if masks.ndim != 3 or masks.dtype != np.bool_:
            raise UsageError(f"PackedMasks needs (N, H, W) bool masks, got {masks.dtype} {masks.shape}")
        n, height, width = masks.shape
        packed = np.packbits(masks, axis=2)  # (N, H, ceil(W / 8)) uint8
        pad = -packed.shape[2] % 8
        if pad:
            packed = np.concatenate([packed, np.zeros((n, height, pad), dtype=np.uint8)], axis=2)
        self.shape = (n, height, width)
        self.words = np.ascontiguousarray(packed).view(np.uint64)
        nonzero = self.words != 0
        self.rows = np.stack(_span(nonzero.any(axis=2)), axis=1)
        self.cols = np.stack(_span(nonzero.any(axis=1)), axis=1)
        self.areas = _popcount_sum(self.words) if n else np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, indices: Sequence[int] | np.ndarray) -> PackedMasks:
        """The masks ``indices`` (in that order) as a new :class:`PackedMasks`, without repacking."""
        picked = np.asarray(indices, dtype=np.int64)
        out = object.__new__(PackedMasks)
        out.shape = (len(picked), *self.shape[1:])
        out.words, out.areas = self.words[picked], self.areas[picked]
        out.rows, out.cols = self.rows[picked], self.cols[picked]
        return out

    @staticmethod
    def concatenate(parts: Sequence[PackedMasks], size_hw: tuple[int, int]) -> PackedMasks:
        """``parts`` one after another (all ``size_hw``); no parts gives zero masks of ``size_hw``."""
        if any(part.shape[1:] != tuple(size_hw) for part in parts):
            raise UsageError(f"every part must be {tuple(size_hw)}")
        if not parts:
            return PackedMasks(np.zeros((0, *size_hw), dtype=bool))
        out = object.__new__(PackedMasks)
        out.shape = (sum(len(part) for part in parts), *size_hw)
        for name in ("words", "areas", "rows", "cols"):
            setattr(out, name, np.concatenate([getattr(part, name) for part in parts]))
        return out

    def intersections(self, i: int, others: PackedMasks, js: np.ndarray) -> np.ndarray:
        """Pixels shared by mask ``i`` of ``self`` and each mask ``js`` of ``others``: ``(len(js),)`` ``int64``.

        ``others`` must have the same ``(H, W)`` (it may be ``self``).
        """
        js = np.asarray(js, dtype=np.int64)
        out = np.zeros(len(js), dtype=np.int64)
        (r0, r1), (c0, c1) = self.rows[i], self.cols[i]
        if r1 == r0 or len(js) == 0:
            return out
        rows, cols = others.rows[js], others.cols[js]
        meets = (rows[:, 0] < r1) & (rows[:, 1] > r0) & (cols[:, 0] < c1) & (cols[:, 1] > c0)
        hits = np.flatnonzero(meets)
        if len(hits):
            crop = others.words[:, r0:r1, c0:c1][js[hits]]
            out[hits] = _popcount_sum(crop & self.words[i, r0:r1, c0:c1])
        return out

    def intersection_matrix(self, others: PackedMasks) -> np.ndarray:
        """Pixels shared by every pair: ``(len(self), len(others))`` ``int64``."""
        if self.shape[1:] != others.shape[1:]:
            raise UsageError(f"masks must share (H, W), got {self.shape[1:]} and {others.shape[1:]}")
        everyone = np.arange(len(others))
        out = np.zeros((len(self), len(others)), dtype=np.int64)
        for i in range(len(self)):
            out[i] = self.intersections(i, others, everyone)
        return out
