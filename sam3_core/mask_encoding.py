"""Masks as COCO RLE and as tight boxes: :func:`masks_to_rle`, :func:`rle_to_mask` (and
:func:`rle_to_coco`), :func:`masks_to_boxes`.

Boxes are ``xyxy`` pixels with exclusive ``x2``/``y2``, as pycocotools' ``toBbox`` once its ``xywh`` is made
``xyxy``. Conventions: :mod:`sam3_core.postprocess`, which re-exports these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from sam3_core.errors import InputError
from sam3_core.mask_arrays import MaskArray, like, to_bool_numpy, to_bool_tensor


def masks_to_rle(masks: MaskArray) -> list[dict[str, Any]]:
    """Encode ``(N, H, W)`` masks as COCO compressed RLE.

    Returns one dict per mask, ``{"size": [H, W], "counts": str}``; ``counts`` is the pycocotools
    byte string decoded as UTF-8, so the result is JSON-serialisable. ``N == 0`` gives ``[]``.
    """
    array = to_bool_numpy(masks, 3)
    if array.shape[0] == 0:
        return []
    # pycocotools wants (H, W, N) uint8 in Fortran order, i.e. each mask column-major: one transposing
    # copy of (N, W, H) gives exactly those bytes (bool and uint8 0/1 share them)
    fortran = np.ascontiguousarray(array.transpose(0, 2, 1)).view(np.uint8).transpose(2, 1, 0)
    encoded = mask_utils.encode(fortran)
    return [{"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("utf-8")} for r in encoded]


def rle_to_coco(rle: Mapping[str, Any]) -> dict[str, Any]:
    """One COCO RLE dict in the form pycocotools' ``decode``/``iou``/``area`` take: ``{"size": [H, W],
    "counts": bytes}`` (compressed).

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
        return {"size": [height, width], "counts": bytes(counts)}
    if isinstance(counts, (list, tuple, np.ndarray)):
        runs = [int(c) for c in counts]
        if any(c < 0 for c in runs) or sum(runs) != height * width:
            raise InputError(f"uncompressed RLE runs must be >= 0 and sum to H*W = {height * width}")
        return mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
    raise InputError(f"RLE 'counts' must be str, bytes or a list of ints, got {type(counts).__name__}")


def rle_to_mask(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode one COCO RLE dict (any form :func:`rle_to_coco` takes) to an ``(H, W)`` ``bool`` numpy array."""
    return np.ascontiguousarray(mask_utils.decode(rle_to_coco(rle)), dtype=bool)


def _span(occupied: torch.Tensor | np.ndarray) -> tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]:
    """First index and last index + 1 of the True entries of each row of ``(N, L)``; ``0, 0`` if none.

    Integer results of the input's kind (numpy ``int64`` for numpy, a tensor on its device for a tensor).
    """
    length = occupied.shape[1]
    if isinstance(occupied, np.ndarray):
        any_set = occupied.any(axis=1)
        start = np.where(any_set, occupied.argmax(axis=1), 0)
        return start, np.where(any_set, length - occupied[:, ::-1].argmax(axis=1), 0)
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
    tensor = to_bool_tensor(masks, 3)
    n, height, width = tensor.shape
    if height == 0 or width == 0:
        return like(torch.zeros((n, 4), dtype=torch.float32, device=tensor.device), masks)
    if tensor.device.type != "cpu":
        y1, y2 = _span(tensor.any(dim=2))
        x1, x2 = _span(tensor.any(dim=1))
        return torch.stack([x1, y1, x2, y2], dim=1).to(torch.float32)
    # On the CPU numpy's bool reductions are several times faster than torch's (and give the same bools).
    array = tensor.numpy()
    y1, y2 = _span(array.any(axis=2))
    x1, x2 = _span(array.any(axis=1))
    boxes = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
    return torch.from_numpy(boxes) if isinstance(masks, torch.Tensor) else boxes
