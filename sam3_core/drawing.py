"""Set-of-mark overlays: draw numbered masks on an image for a multimodal LLM to read.

Conventions used throughout this module:

* ``image`` is an ``(H, W, 3)`` ``uint8`` RGB array (a ``PIL.Image`` is accepted too and converted).
* a single ``mask`` is an ``(H, W)`` boolean array; ``masks`` is an ``(N, H, W)`` boolean stack.
* points are ``(x, y)`` pixel coordinates (column, row), as Pillow uses them.

Every mask id maps to a fixed palette colour (:func:`color_for_id`), so the same object keeps its
colour in every render of a run. Each mask is tinted, outlined on its inner edge (pixels outside every
mask are never changed, apart from label boxes), and labelled with its id in a rounded box placed at the
mask's thickest point (:func:`label_anchor`). Empty masks are skipped: no tint, no outline, no label.

Speed: the canvas is kept as ``uint8`` channel planes; each mask is blended through a 256-entry table
per channel over its bounding box only, and label anchors come from :mod:`sam3_core.anchors` (erosion
on a coarse grid, no Python loop over rows). Callers that draw the same masks more than once pass the
anchors back in (``anchors=`` / ``anchor=``) instead of having them found again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from PIL import Image

from sam3_core.anchors import Anchor, bbox, distance_transform, label_anchor, label_anchors
from sam3_core.errors import UsageError
from sam3_core.label_boxes import checked_anchors, default_font_size, draw_labels, font
from sam3_core.palette import BLACK, PALETTE, RGB, color_for_id, contrast_ratio, relative_luminance, text_color_for

__all__ = [
    "PALETTE", "color_for_id", "contrast_ratio", "distance_transform", "font", "inner_outline", "label_anchor",
    "label_anchors", "relative_luminance", "render_final", "render_masks", "render_single_mask",
    "text_color_for", "zoomed_crop",
]  # the anchor, palette and font functions live in sam3_core.anchors, .palette and .label_boxes, and are part of
#    this module's API too

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------- input checking
def _as_image_array(image: np.ndarray | Image.Image) -> np.ndarray:
    """Return ``image`` as a contiguous ``(H, W, 3)`` ``uint8`` array."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise UsageError(f"image must be an (H, W, 3) array, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise UsageError(f"image must be uint8, got {array.dtype}")
    return np.ascontiguousarray(array)


def _as_mask_stack(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Return ``masks`` as an ``(N, H, W)`` bool array; a single ``(H, W)`` mask becomes ``N = 1``."""
    stack = np.asarray(masks)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.size == 0 and stack.ndim != 3:
        stack = np.zeros((0, height, width), dtype=bool)
    if stack.ndim != 3 or stack.shape[1:] != (height, width):
        raise UsageError(f"masks must have shape (N, {height}, {width}), got {stack.shape}")
    return stack.astype(bool, copy=False)


# ------------------------------------------------------------------------------------- drawing
def _morph(mask: np.ndarray, iterations: int, *, grow: bool) -> np.ndarray:
    """Binary dilation (``grow``) or erosion with a 3x3 square; outside the array counts as background."""
    combine = np.logical_or if grow else np.logical_and
    out = mask
    for _ in range(iterations):
        padded = np.pad(out, 1)
        rows = combine(combine(padded[:-2], padded[1:-1]), padded[2:])
        out = combine(combine(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])
    return out


def inner_outline(mask: np.ndarray, width: int) -> np.ndarray:
    """The band of ``mask`` pixels within ``width`` pixels of its edge, ``(H, W)`` bool, inside the mask."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~_morph(mask, max(1, width), grow=False)


def _default_outline_width(height: int, width: int) -> int:
    return max(1, round(min(height, width) / 350))


def _planar(array: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` -> a contiguous ``(3, H, W)`` copy: each channel contiguous, so table look-ups are fast."""
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def _interleaved(planes: np.ndarray) -> Image.Image:
    """A ``(3, H, W)`` ``uint8`` canvas as an RGB ``PIL.Image``."""
    return Image.fromarray(np.ascontiguousarray(planes.transpose(1, 2, 0)), mode="RGB")


def _blend_table(color: RGB, alpha: float) -> np.ndarray:
    """``(3, 256)`` ``uint8``: entry ``[c, v]`` is channel value ``v`` blended towards ``color[c]`` by ``alpha``.

    Computed in float32 and rounded once, exactly as blending a float32 image and rounding would be.
    """
    values = np.arange(256, dtype=np.float32)[None, :]
    paint = np.asarray(color, dtype=np.float32)[:, None]
    return np.rint(values * (1.0 - alpha) + paint * alpha).astype(np.uint8)


def _apply_table(planes: np.ndarray, table: np.ndarray, where: np.ndarray) -> None:
    """In place: every channel ``c`` of ``planes`` (``(3, h, w)``) replaced by ``table[c][value]`` where ``where``."""
    for channel, lookup in zip(planes, table):
        np.copyto(channel, lookup.take(channel), where=where)


def _tint(planes: np.ndarray, mask: np.ndarray, color: RGB, alpha: float, outline: int) -> None:
    """Blend ``color`` into ``planes`` (``uint8`` ``(3, H, W)``) over ``mask``, then paint its inner outline.

    Only the mask's bounding box is touched, through a 256-entry table per channel.
    """
    box = bbox(mask)
    if box is None:
        return
    x0, y0, x1, y1 = box
    region = planes[:, y0:y1, x0:x1]
    sub = mask[y0:y1, x0:x1]
    _apply_table(region, _blend_table(color, alpha), sub)
    if outline > 0:
        edge = inner_outline(sub, outline)
        for channel, value in zip(region, color):
            np.copyto(channel, value, where=edge)


def render_masks(
    image: np.ndarray | Image.Image,
    masks: np.ndarray,
    ids: list[int],
    *,
    alpha: float = 0.45,
    outline_width: int | None = None,
    font_size: int | None = None,
    labels: bool = True,
    anchors: Sequence[Anchor | None] | None = None,
) -> Image.Image:
    """Set-of-mark render: every mask tinted in its id's colour, outlined and labelled with its id.

    Args:
        image: ``(H, W, 3)`` ``uint8`` RGB (or a ``PIL.Image``).
        masks: ``(N, H, W)`` bool (a single ``(H, W)`` mask is accepted).
        ids: ``N`` integer ids; ``ids[i]`` labels ``masks[i]`` and picks its colour.
        alpha: tint opacity in ``[0, 1]``.
        outline_width: outline thickness in pixels (default: scaled with the image size).
        font_size: label text size in pixels (default: scaled with the image size).
        labels: draw the id labels.
        anchors: the ``N`` label anchors ``(x, y)`` (``None`` for an empty mask) when the caller has
            them already, e.g. kept from an earlier render of the same masks (:func:`label_anchors`);
            computed here when not given.

    Returns:
        A new ``(W, H)`` RGB ``PIL.Image``. Larger masks are drawn first so small ones stay visible;
        empty masks are skipped. The input is not modified. Where masks overlap, each blend is rounded
        to ``uint8`` before the next (within one level of blending in floats throughout).
    """
    array = _as_image_array(image)
    height, width = array.shape[:2]
    stack = _as_mask_stack(masks, height, width)
    if len(ids) != len(stack):
        raise UsageError(f"got {len(stack)} masks but {len(ids)} ids")
    return _render(_planar(array), stack, ids, alpha=alpha, outline_width=outline_width, font_size=font_size,
                   labels=labels, anchors=anchors)


def _render(planes: np.ndarray, stack: np.ndarray, ids: list[int], *, alpha: float, outline_width: int | None,
            font_size: int | None, labels: bool, anchors: Sequence[Anchor | None] | None) -> Image.Image:
    """:func:`render_masks` on a ``(3, H, W)`` canvas of its own (drawn on in place), inputs checked."""
    height, width = planes.shape[1:]
    outline = _default_outline_width(height, width) if outline_width is None else outline_width
    order = np.argsort(-np.count_nonzero(stack, axis=(1, 2)), kind="stable")
    for index in order:
        _tint(planes, stack[index], color_for_id(ids[index]), alpha, outline)
    result = _interleaved(planes)
    if labels:
        size = default_font_size(height, width) if font_size is None else font_size
        # small masks pick label spots first
        draw_labels(result, checked_anchors(anchors, stack), ids, order[::-1], size)
    return result


def render_single_mask(
    image: np.ndarray | Image.Image,
    mask: np.ndarray,
    mask_id: int,
    *,
    dim: float = 0.35,
    alpha: float = 0.4,
    anchor: Anchor | None = None,
) -> Image.Image:
    """One mask alone, highlighted for verification: the rest of the image is darkened by ``dim``.

    Args:
        image: ``(H, W, 3)`` ``uint8`` RGB (or a ``PIL.Image``).
        mask: ``(H, W)`` bool.
        mask_id: the mask's id (label text and colour).
        dim: fraction by which pixels outside the mask are darkened (0 keeps them as they are).
        alpha: tint opacity inside the mask.
        anchor: the mask's label anchor ``(x, y)`` when the caller has it already (see
            :func:`render_masks`); computed here when not given.

    Returns:
        A new ``(W, H)`` RGB ``PIL.Image``; an empty mask gives the dimmed image with no label.
    """
    array = _as_image_array(image)
    single = _as_mask_stack(mask, *array.shape[:2])[0]
    planes = _planar(array)
    _apply_table(planes, _blend_table(BLACK, dim), ~single)  # v * (1 - dim), rounded
    return _render(planes, single[None], [mask_id], alpha=alpha, outline_width=None, font_size=None, labels=True,
                   anchors=None if anchor is None else [anchor])


def _context_box(
    box: tuple[int, int, int, int], context: float, min_margin: int, width: int, height: int
) -> tuple[int, int, int, int]:
    """``box`` grown by ``context`` x its size (at least ``min_margin`` px) per side, clamped to the image."""
    x0, y0, x1, y1 = box
    mx = max(min_margin, round(context * (x1 - x0)))
    my = max(min_margin, round(context * (y1 - y0)))
    return max(0, x0 - mx), max(0, y0 - my), min(width, x1 + mx), min(height, y1 + my)


def zoomed_crop(
    image: np.ndarray | Image.Image,
    mask: np.ndarray,
    *,
    context: float = 0.5,
    min_size: int = 448,
    min_margin: int = 16,
    outline_width: int | None = None,
    color: RGB = (255, 230, 0),
) -> Image.Image:
    """A close-up of one mask: its box plus context, upscaled, with the mask's outline drawn.

    Args:
        image: ``(H, W, 3)`` ``uint8`` RGB (or a ``PIL.Image``).
        mask: ``(H, W)`` bool.
        context: margin added on each side, as a fraction of the box's width / height.
        min_size: the crop is upscaled (never downscaled) until its longer side is at least this.
        min_margin: smallest margin in pixels, so tiny masks still show their surroundings.
        outline_width: outline thickness in output pixels (default: scaled with the output size).
        color: outline colour; a one-pixel dark line just outside it keeps it visible on any background.

    Returns:
        A new RGB ``PIL.Image`` of the clamped crop. An empty mask yields the whole image, upscaled
        the same way, with no outline.
    """
    array = _as_image_array(image)
    height, width = array.shape[:2]
    single = _as_mask_stack(mask, height, width)[0]
    box = bbox(single)
    if box is None:
        logger.debug("zoomed_crop got an empty mask; returning the whole image")
        x0, y0, x1, y1 = 0, 0, width, height
    else:
        x0, y0, x1, y1 = _context_box(box, context, min_margin, width, height)
    scale = max(1.0, min_size / max(x1 - x0, y1 - y0))
    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    crop = Image.fromarray(array[y0:y1, x0:x1])
    if crop.size != size:  # resizing to the same size would only copy
        crop = crop.resize(size, Image.Resampling.BICUBIC)
    if box is None:
        return crop
    sub = single[y0:y1, x0:x1]
    if sub.shape[::-1] != size:  # as 0/1 bytes: Pillow's 1-bit mode packs and unpacks bits, slowly
        sub = np.asarray(Image.fromarray(sub.view(np.uint8)).resize(size, Image.Resampling.NEAREST)) > 0
    edge = inner_outline(sub, outline_width or _default_outline_width(size[1], size[0]) + 1)
    out = np.array(crop)
    backing = _morph(edge, 1, grow=True) & ~edge & ~sub  # a dark line just outside the outline
    pixels = out.reshape(-1, 3)  # flat indices: far faster than a boolean index or a broadcast ``where``
    pixels[np.flatnonzero(edge)] = color
    pixels[np.flatnonzero(backing)] = BLACK
    return Image.fromarray(out)


def render_final(
    image: np.ndarray | Image.Image, masks: np.ndarray, ids: list[int] | None = None, *, alpha: float = 0.5
) -> Image.Image:
    """The final answer: the chosen masks tinted and outlined, labelled only when ``ids`` are given.

    Args:
        image: ``(H, W, 3)`` ``uint8`` RGB (or a ``PIL.Image``).
        masks: ``(N, H, W)`` or ``(H, W)`` bool; ``N = 0`` returns the image unchanged.
        ids: optional ``N`` ids for colours and labels; without them masks are coloured by position.
        alpha: tint opacity.

    Returns:
        A new ``(W, H)`` RGB ``PIL.Image``.
    """
    array = _as_image_array(image)
    stack = _as_mask_stack(masks, *array.shape[:2])
    colour_ids = list(range(len(stack))) if ids is None else list(ids)
    return render_masks(array, stack, colour_ids, alpha=alpha, labels=ids is not None)
