"""Pairwise overlaps of instance masks (IoU, intersection over the smaller area) and greedy suppression by them
(:func:`remove_overlaps_iom`, :func:`mask_nms`).

Intersections are exact integer counts: on the CPU from bit-packed rows (:class:`~sam3_core.packed_masks.PackedMasks`,
only the pairs greedy suppression needs), elsewhere from one ``float32`` matrix product split along the pixel axis.
:mod:`sam3_core.postprocess` states the conventions and re-exports the public functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias

import numpy as np
import torch

from sam3_core.errors import UsageError
from sam3_core.mask_arrays import MaskArray, like, to_bool_tensor
from sam3_core.packed_masks import PackedMasks

Scores: TypeAlias = np.ndarray | torch.Tensor | Sequence[float]
KeepIndices: TypeAlias = list[int] | torch.Tensor

# Elements (masks x pixels, both operands together) converted to float32 per chunk of the pairwise
# product: 2**24 float32 values = 64 MiB, and a chunk never spans more than 2**23 pixels.
_CHUNK_ELEMENTS = 2**24

RatioFn: TypeAlias = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _pairwise_counts(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Intersections ``(Na, Nb)`` and areas ``(Na,)``, ``(Nb,)`` of bool masks, all ``float32``."""
    if a.shape[1:] != b.shape[1:]:
        raise UsageError(f"masks must share (H, W), got {tuple(a.shape[1:])} and {tuple(b.shape[1:])}")
    flat_a = a.flatten(1)
    flat_b = b.to(a.device).flatten(1)
    inter = torch.zeros((flat_a.shape[0], flat_b.shape[0]), dtype=torch.float32, device=a.device)
    step = max(1, min(2**23, _CHUNK_ELEMENTS // max(1, flat_a.shape[0] + flat_b.shape[0])))
    for lo in range(0, flat_a.shape[1], step):
        chunk_a = flat_a[:, lo : lo + step].to(torch.float32)
        chunk_b = flat_b[:, lo : lo + step].to(torch.float32)
        inter.addmm_(chunk_a, chunk_b.T)
    return inter, flat_a.sum(dim=1).to(torch.float32), flat_b.sum(dim=1).to(torch.float32)


def _iou(inter: torch.Tensor, area_a: torch.Tensor, area_b: torch.Tensor) -> torch.Tensor:
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(inter))


def _iom(inter: torch.Tensor, area_a: torch.Tensor, area_b: torch.Tensor) -> torch.Tensor:
    smaller = torch.minimum(area_a[:, None], area_b[None, :])
    return torch.where(smaller > 0, inter / smaller.clamp_min(1), torch.zeros_like(inter))


def _pairwise(a: MaskArray, b: MaskArray, ratio: RatioFn) -> MaskArray:
    ta, tb = to_bool_tensor(a, 3, "a"), to_bool_tensor(b, 3, "b")
    if ta.device.type != "cpu":
        return like(ratio(*_pairwise_counts(ta, tb)), a)
    if ta.shape[1:] != tb.shape[1:]:
        raise UsageError(f"masks must share (H, W), got {tuple(ta.shape[1:])} and {tuple(tb.shape[1:])}")
    packed_a, packed_b = PackedMasks(ta.numpy()), PackedMasks(tb.cpu().numpy())
    counts = torch.from_numpy(packed_a.intersection_matrix(packed_b))
    result = ratio(counts.to(torch.float32), *(_areas(p) for p in (packed_a, packed_b)))
    return like(result, a)


def _areas(packed: PackedMasks) -> torch.Tensor:
    """``float32`` areas, converted from the exact counts as the matrix path converts its sums."""
    return torch.from_numpy(packed.areas).to(torch.float32)


def pairwise_mask_iou(a: MaskArray, b: MaskArray) -> MaskArray:
    """Intersection over union of every pair: ``(Na, H, W)`` x ``(Nb, H, W)`` -> ``(Na, Nb)`` ``float32``.

    A pair of two empty masks scores 0. Computed on ``a``'s device; returned as ``a``'s kind.
    """
    return _pairwise(a, b, _iou)


def packed_mask_iou(a: PackedMasks, b: PackedMasks) -> np.ndarray:
    """:func:`pairwise_mask_iou` of masks already packed: ``(len(a), len(b))`` ``float32`` numpy."""
    counts = torch.from_numpy(a.intersection_matrix(b)).to(torch.float32)
    return _iou(counts, _areas(a), _areas(b)).numpy()


def pairwise_mask_iom(a: MaskArray, b: MaskArray) -> MaskArray:
    """Intersection over the smaller area of every pair: ``(Na, Nb)`` ``float32``, like
    :func:`pairwise_mask_iou`. A pair involving an empty mask scores 0.
    """
    return _pairwise(a, b, _iom)


def _scores_tensor(scores: Scores, count: int) -> torch.Tensor:
    if isinstance(scores, torch.Tensor):
        values = scores.detach().to("cpu", torch.float64)
    else:
        values = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    if values.shape != (count,):
        raise UsageError(f"scores must have shape ({count},), got {tuple(values.shape)}")
    return values


def _greedy_keep(masks: MaskArray, scores: Scores, threshold: float, ratio: RatioFn) -> KeepIndices:
    """Greedy suppression shared by :func:`remove_overlaps_iom` and :func:`mask_nms`.

    Both ratios are at most 1 (the intersection never exceeds the smaller area nor the union, and the
    ``float32`` quotient of ``x <= y`` is ``<= 1``), so a threshold ``>= 1`` removes nothing but empty
    masks and no pair is counted.
    """
    tensor = to_bool_tensor(masks, 3)
    order = torch.argsort(_scores_tensor(scores, tensor.shape[0]), descending=True, stable=True)
    if tensor.device.type != "cpu":
        kept = _greedy_matrix(tensor, order, threshold, ratio)
    else:
        kept = _greedy_packed(PackedMasks(tensor.numpy()), order.numpy(), threshold, ratio)
    keep = torch.as_tensor(kept, dtype=torch.int64)
    return keep.to(tensor.device) if isinstance(masks, torch.Tensor) else keep.tolist()


def _greedy_matrix(tensor: torch.Tensor, order: torch.Tensor, threshold: float, ratio: RatioFn) -> list[int]:
    """Kept indices from the full pairwise matrix (one matrix product; for masks on an accelerator)."""
    nonempty = tensor.flatten(1).any(dim=1).cpu()
    order = order[nonempty[order]]
    if threshold >= 1:
        return order.tolist()
    ranked = tensor[order.to(tensor.device)]
    overlapping = (ratio(*_pairwise_counts(ranked, ranked)) > threshold).cpu().numpy()
    removed = np.zeros(len(order), dtype=bool)
    kept: list[int] = []
    for i in range(len(order)):
        if not removed[i]:
            kept.append(int(order[i]))
            removed |= overlapping[i]
    return kept


def _greedy_packed(packed: PackedMasks, order: np.ndarray, threshold: float, ratio: RatioFn) -> list[int]:
    """Kept indices, counting only a kept mask against the lower-ranked masks still alive (CPU)."""
    order = order[packed.areas[order] > 0]
    if threshold >= 1:
        return order.tolist()
    areas = _areas(packed)
    alive = np.ones(len(order), dtype=bool)
    kept: list[int] = []
    for rank, index in enumerate(order.tolist()):
        if not alive[rank]:
            continue
        kept.append(index)
        rest = rank + 1 + np.flatnonzero(alive[rank + 1 :])
        if len(rest) == 0:
            break
        others = order[rest]
        inter = torch.from_numpy(packed.intersections(index, packed, others)).to(torch.float32)
        overlapping = ratio(inter[None], areas[index : index + 1], areas[torch.from_numpy(others)])[0] > threshold
        alive[rest[overlapping.numpy()]] = False
    return kept


def remove_overlaps_iom(masks: MaskArray, scores: Scores, iom_threshold: float = 0.5) -> KeepIndices:
    """Greedy removal of masks that mostly lie inside (or mostly cover) a higher-scoring mask.

    ``masks`` ``(N, H, W)``, ``scores`` ``(N,)``. Masks are visited by descending score (ties: lower
    index first); a mask is dropped when its intersection over the smaller of the two areas with any
    already kept mask is strictly greater than ``iom_threshold``. Empty masks are always dropped.
    Returns the kept indices into ``masks`` in descending-score order: a ``list[int]`` for numpy
    input, a 1-D ``int64`` tensor on the masks' device for tensor input.
    """
    return _greedy_keep(masks, scores, iom_threshold, _iom)


def mask_nms(masks: MaskArray, scores: Scores, iou_threshold: float = 0.5) -> KeepIndices:
    """Mask non-maximum suppression: as :func:`remove_overlaps_iom` but with intersection over union.

    A mask is dropped when its IoU with an already kept, higher-scoring mask is strictly greater than
    ``iou_threshold``. Empty masks are always dropped. Same return convention as
    :func:`remove_overlaps_iom`.
    """
    return _greedy_keep(masks, scores, iou_threshold, _iou)
