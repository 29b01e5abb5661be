"""Post-processing helpers for instance masks: RLE, boxes, polygons, overlap removal and mask NMS.

The functions live in one module per family and are re-exported here: :mod:`sam3_core.mask_encoding` (RLE,
boxes), :mod:`sam3_core.mask_polygons`, :mod:`sam3_core.mask_overlaps` (pairwise ratios, IoM removal, NMS), over
the input checks of :mod:`sam3_core.mask_arrays`. Conventions shared by every function here:

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

from sam3_core.mask_arrays import MaskArray
from sam3_core.mask_encoding import masks_to_boxes, masks_to_rle, rle_to_mask
from sam3_core.mask_overlaps import (
    KeepIndices,
    Scores,
    mask_nms,
    packed_mask_iou,
    pairwise_mask_iom,
    pairwise_mask_iou,
    remove_overlaps_iom,
)
from sam3_core.mask_polygons import mask_to_polygons

__all__ = [
    "KeepIndices", "MaskArray", "Scores", "mask_nms", "mask_to_polygons", "masks_to_boxes", "masks_to_rle",
    "packed_mask_iou", "pairwise_mask_iom", "pairwise_mask_iou", "remove_overlaps_iom", "rle_to_mask",
]
