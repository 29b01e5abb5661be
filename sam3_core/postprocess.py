"""Post-processing helpers for instance masks: RLE, boxes, polygons, overlap removal and mask NMS.

Conventions shared by every function here:

* Instance masks are ``(N, H, W)`` arrays, a single mask is ``(H, W)``. ``bool`` is expected; any other
  dtype is accepted and every nonzero value counts as foreground.
* Inputs may be :class:`numpy.ndarray` or :class:`torch.Tensor` (on any device). Array results come
  back as the same kind: a numpy input gives numpy, a tensor input gives a tensor on the input's device.
  Polygons and RLE dicts are plain Python objects whatever the input.
* The pairwise work (intersections of pairs of masks) counts exact integers. On the CPU the masks are
  bit-packed along rows (64 pixels per word) and each pair is counted with AND + popcount inside the
  first mask's bounding rows and words only; pairs whose bounding boxes do not meet count 0 without
  being touched. Greedy suppression counts only the pairs it needs (a kept mask against the masks not
  removed yet). On other devices it is one matrix product of the flattened masks in ``float32``, split
  into chunks along the pixel axis (``float32``, never ``float16``: exact up to 2**24 pixels per chunk).
  Both give the same counts; ratios are then computed the same way, in ``float32``.
* Boxes are ``xyxy`` in pixel units with exclusive ``x2``/``y2`` (``x2`` = last column + 1), the same
  box as :func:`pycocotools.mask.toBbox` gives once its ``xywh`` is turned into ``xyxy``.
* Polygons are COCO polygons: a list of flat ``[x0, y0, x1, y1, ...]`` lists on the pixel-corner grid
  (pixel ``(r, c)`` is the square ``[c, c + 1] x [r, r + 1]``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import torch
from pycocotools import mask as mask_utils

from sam3_core.errors import InputError, UsageError
from sam3_core.packed_masks import PackedMasks

MaskArray: TypeAlias = np.ndarray | torch.Tensor
Scores: TypeAlias = np.ndarray | torch.Tensor | Sequence[float]
KeepIndices: TypeAlias = list[int] | torch.Tensor

# Elements (masks x pixels, both operands together) converted to float32 per chunk of the pairwise
# product: 2**24 float32 values = 64 MiB, and a chunk never spans more than 2**23 pixels.
_CHUNK_ELEMENTS = 2**24

# Unit steps on the corner grid for the four edge directions: east, south, west, north (image
# coordinates, y pointing down). ``(d + 1) % 4`` is a right turn on screen, ``(d + 3) % 4`` a left turn.
_STEPS = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# input conversion
# --------------------------------------------------------------------------------------------------


def _check_ndim(shape: tuple[int, ...], ndim: int, what: str) -> None:
    if len(shape) != ndim:
        raise UsageError(f"{what} must have {ndim} dimensions, got shape {tuple(shape)}")


def _to_bool_tensor(masks: MaskArray, ndim: int, what: str = "masks") -> torch.Tensor:
    """A ``bool`` tensor view of ``masks`` (numpy input shares memory where it can), same device."""
    if isinstance(masks, torch.Tensor):
        tensor = masks.detach()
    elif isinstance(masks, np.ndarray):
        array = masks if masks.dtype == np.bool_ else masks != 0
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    else:
        raise UsageError(f"{what} must be a numpy array or a torch tensor, got {type(masks).__name__}")
    _check_ndim(tuple(tensor.shape), ndim, what)
    return tensor if tensor.dtype == torch.bool else tensor != 0


def _to_bool_numpy(masks: MaskArray, ndim: int, what: str = "masks") -> np.ndarray:
    """A ``bool`` numpy array of ``masks`` (tensors are copied to the CPU)."""
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    if not isinstance(masks, np.ndarray):
        raise UsageError(f"{what} must be a numpy array or a torch tensor, got {type(masks).__name__}")
    _check_ndim(masks.shape, ndim, what)
    return masks if masks.dtype == np.bool_ else masks != 0


def _like(result: torch.Tensor, reference: MaskArray) -> MaskArray:
    """``result`` as the same kind as ``reference``: the tensor itself, or a numpy copy on the CPU."""
    return result if isinstance(reference, torch.Tensor) else result.cpu().numpy()


# --------------------------------------------------------------------------------------------------
# RLE and boxes
# --------------------------------------------------------------------------------------------------


def masks_to_rle(masks: MaskArray) -> list[dict[str, Any]]:
    """Encode ``(N, H, W)`` masks as COCO compressed RLE.

    Returns one dict per mask, ``{"size": [H, W], "counts": str}``; ``counts`` is the pycocotools
    byte string decoded as UTF-8, so the result is JSON-serialisable. ``N == 0`` gives ``[]``.
    """
    array = _to_bool_numpy(masks, 3)
    if array.shape[0] == 0:
        return []
    # pycocotools wants (H, W, N) uint8 in Fortran order, i.e. each mask column-major: one transposing
    # copy of (N, W, H) gives exactly those bytes (bool and uint8 0/1 share them)
    fortran = np.ascontiguousarray(array.transpose(0, 2, 1)).view(np.uint8).transpose(2, 1, 0)
    encoded = mask_utils.encode(fortran)
    return [{"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("utf-8")} for r in encoded]


def rle_to_mask(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode one COCO RLE dict to an ``(H, W)`` ``bool`` numpy array.

    ``counts`` may be compressed (``str`` or ``bytes``) or uncompressed (a list of run lengths, starting
    with a background run, column-major as COCO defines it). Raises :class:`InputError` when the dict
    is malformed or uncompressed runs do not add up to ``H * W``.
    """
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"not a COCO RLE dict with 'size': [H, W] and 'counts': {exc}") from exc
    if isinstance(counts, str):
        counts = counts.encode("utf-8")
    if isinstance(counts, (bytes, bytearray)):
        compressed = {"size": [height, width], "counts": bytes(counts)}
    elif isinstance(counts, (list, tuple, np.ndarray)):
        runs = [int(c) for c in counts]
        if any(c < 0 for c in runs) or sum(runs) != height * width:
            raise InputError(f"uncompressed RLE runs must be >= 0 and sum to H*W = {height * width}")
        compressed = mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
    else:
        raise InputError(f"RLE 'counts' must be str, bytes or a list of ints, got {type(counts).__name__}")
    return np.ascontiguousarray(mask_utils.decode(compressed), dtype=bool)


def _span(occupied: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First index and last index + 1 of the True entries of each row of ``(N, L)``; ``0, 0`` if none."""
    length = occupied.shape[1]
    ramp = torch.arange(1, length + 1, device=occupied.device)
    end = (occupied * ramp).amax(dim=1)
    start = length - (occupied * (length + 1 - ramp)).amax(dim=1)
    return torch.where(end > 0, start, torch.zeros_like(start)), end


def masks_to_boxes(masks: MaskArray) -> MaskArray:
    """Tight boxes of ``(N, H, W)`` masks as ``(N, 4)`` ``float32`` ``[x1, y1, x2, y2]``.

    ``x2``/``y2`` are exclusive (last occupied column/row + 1), i.e. pycocotools ``toBbox``'s
    ``[x, y, w, h]`` as ``[x, y, x + w, y + h]``. An empty mask gives ``[0, 0, 0, 0]``.
    Returns numpy for numpy input, a tensor on the masks' device for tensor input.
    """
    tensor = _to_bool_tensor(masks, 3)
    n, height, width = tensor.shape
    if height == 0 or width == 0:
        return _like(torch.zeros((n, 4), dtype=torch.float32, device=tensor.device), masks)
    y1, y2 = _span(tensor.any(dim=2))
    x1, x2 = _span(tensor.any(dim=1))
    return _like(torch.stack([x1, y1, x2, y2], dim=1).to(torch.float32), masks)


# --------------------------------------------------------------------------------------------------
# polygons
# --------------------------------------------------------------------------------------------------


def _boundary_edges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit boundary edges of ``mask`` on the corner grid, oriented with the foreground on their right.

    Returns ``starts`` ``(E, 2)`` int64 ``(x, y)``, ``dirs`` ``(E,)`` (0 east, 1 south, 2 west,
    3 north) and ``nxt`` ``(E,)``, the index of the edge that follows each edge on its loop. Where two
    loops meet at a corner (diagonal pixels), the walk turns left, which joins diagonal neighbours:
    8-connectivity. East edges come first, in raster order. ``mask`` must not be empty.
    """
    padded = np.pad(mask, 1)
    above, below = padded[:-1, 1:-1], padded[1:, 1:-1]  # horizontal edges: (H + 1, W)
    left, right = padded[1:-1, :-1], padded[1:-1, 1:]  # vertical edges: (H, W + 1)
    groups = (
        (below & ~above, (0, 0)),
        (left & ~right, (0, 0)),
        (above & ~below, (1, 0)),
        (right & ~left, (0, 1)),
    )
    starts_list, dirs_list = [], []
    for code, (selected, (dx, dy)) in enumerate(groups):
        ys, xs = np.nonzero(selected)
        starts_list.append(np.stack([xs + dx, ys + dy], axis=1))
        dirs_list.append(np.full(len(xs), code, dtype=np.int64))
    starts, dirs = np.concatenate(starts_list).astype(np.int64), np.concatenate(dirs_list)
    stride = mask.shape[1] + 1
    keys = (starts[:, 1] * stride + starts[:, 0]) * 4 + dirs
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    ends = starts + _STEPS[dirs]
    end_vertex = ends[:, 1] * stride + ends[:, 0]
    nxt = np.full(len(dirs), -1, dtype=np.int64)
    for turn in (3, 0, 1):  # left, straight, right: preferring left gives 8-connectivity
        wanted = end_vertex * 4 + (dirs + turn) % 4
        pos = np.minimum(np.searchsorted(sorted_keys, wanted), len(keys) - 1)
        hit = (nxt < 0) & (sorted_keys[pos] == wanted)
        nxt[hit] = order[pos[hit]]
    return starts, dirs, nxt


def _walk_loops(nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split the permutation ``nxt`` into its cycles.

    Returns ``walk``, every edge index once with each loop's edges contiguous and in walking order, and
    ``offsets`` (``loops + 1``,): loop ``i`` is ``walk[offsets[i]:offsets[i + 1]]``. Loops come in the
    order of their lowest edge index, and each starts there.
    """
    following = nxt.tolist()
    seen = bytearray(len(following))
    walk: list[int] = []
    offsets = [0]
    for first in range(len(following)):
        if seen[first]:
            continue
        edge = first
        while not seen[edge]:
            seen[edge] = 1
            walk.append(edge)
            edge = following[edge]
        offsets.append(len(walk))
    return np.asarray(walk, dtype=np.int64), np.asarray(offsets, dtype=np.int64)


def _douglas_peucker(points: np.ndarray, tolerance: float) -> np.ndarray:
    """Keep-mask for an open ``(K, 2)`` chain simplified by Douglas-Peucker; both ends are kept."""
    keep = np.zeros(len(points), dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        i, j = stack.pop()
        if j <= i + 1:
            continue
        inner = points[i + 1 : j] - points[i]
        chord = points[j] - points[i]
        norm = float(np.hypot(chord[0], chord[1]))
        if norm > 0:
            dist = np.abs(chord[0] * inner[:, 1] - chord[1] * inner[:, 0]) / norm
        else:
            dist = np.hypot(inner[:, 0], inner[:, 1])
        k = int(np.argmax(dist))
        if dist[k] > tolerance:
            keep[i + 1 + k] = True
            stack.extend([(i, i + 1 + k), (i + 1 + k, j)])
    return keep


def _simplify_ring(vertices: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker on a closed ring, split at the vertex farthest from the first one.

    Falls back to the unsimplified ring when fewer than 3 vertices would remain.
    """
    if len(vertices) <= 3:
        return vertices
    far = int(np.argmax(np.hypot(*(vertices - vertices[0]).T)))
    ring = np.vstack([vertices, vertices[:1]])
    head, tail = ring[: far + 1], ring[far:]
    head, tail = head[_douglas_peucker(head, tolerance)], tail[_douglas_peucker(tail, tolerance)]
    simplified = np.vstack([head, tail[1:-1]])
    return simplified if len(simplified) >= 3 else vertices


def mask_to_polygons(mask: MaskArray, min_area: float = 0.0, tolerance: float = 0.0) -> list[list[float]]:
    """Outer boundaries of the connected components of an ``(H, W)`` mask as COCO polygons.

    Components are 8-connected (diagonal pixels belong together). Each polygon is a flat
    ``[x0, y0, x1, y1, ...]`` list of pixel-corner coordinates, traced clockwise on screen starting at
    the top-left corner of the component's top-left pixel, with only the corners (direction changes)
    kept; decoding it with ``pycocotools.mask.frPyObjects`` reproduces the component with its holes
    filled. Holes are ignored: a ring gives just its outer boundary, and a component inside another's
    hole gives its own polygon. Polygons come in raster order of their top-left pixel.

    ``min_area`` drops components whose outer polygon encloses fewer pixels (holes count as inside).
    ``tolerance`` > 0 simplifies each polygon with Douglas-Peucker (max deviation in pixels); a
    polygon that would drop below 3 vertices is kept unsimplified. Default 0: no simplification.
    """
    array = _to_bool_numpy(mask, 2, "mask")
    if not array.any():
        return []
    starts, dirs, nxt = _boundary_edges(array)
    walk, offsets = _walk_loops(nxt)
    ends = starts + _STEPS[dirs]
    # twice the shoelace area of each loop: positive around a component, negative around a hole
    cross = starts[:, 0] * ends[:, 1] - ends[:, 0] * starts[:, 1]
    doubled_area = np.add.reduceat(cross[walk], offsets[:-1])
    previous = np.empty_like(nxt)
    previous[nxt] = np.arange(len(nxt))
    is_corner = dirs != dirs[previous]
    polygons: list[list[float]] = []
    for loop in np.flatnonzero((doubled_area > 0) & (doubled_area >= 2 * min_area)):
        edges = walk[offsets[loop] : offsets[loop + 1]]
        vertices = starts[edges[is_corner[edges]]].astype(np.float64)
        if tolerance > 0:
            vertices = _simplify_ring(vertices, tolerance)
        polygons.append(vertices.ravel().tolist())
    return polygons


# --------------------------------------------------------------------------------------------------
# pairwise overlaps and greedy suppression
# --------------------------------------------------------------------------------------------------

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
    ta, tb = _to_bool_tensor(a, 3, "a"), _to_bool_tensor(b, 3, "b")
    if ta.device.type != "cpu":
        return _like(ratio(*_pairwise_counts(ta, tb)), a)
    if ta.shape[1:] != tb.shape[1:]:
        raise UsageError(f"masks must share (H, W), got {tuple(ta.shape[1:])} and {tuple(tb.shape[1:])}")
    packed_a, packed_b = PackedMasks(ta.numpy()), PackedMasks(tb.cpu().numpy())
    counts = torch.from_numpy(packed_a.intersection_matrix(packed_b))
    result = ratio(counts.to(torch.float32), *(_areas(p) for p in (packed_a, packed_b)))
    return _like(result, a)


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
    tensor = _to_bool_tensor(masks, 3)
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
