"""Set-of-mark overlays: draw numbered masks on an image for a multimodal LLM to read.

Conventions used throughout this module:

* ``image`` is an ``(H, W, 3)`` ``uint8`` RGB array (a ``PIL.Image`` is accepted too and converted).
* a single ``mask`` is an ``(H, W)`` boolean array; ``masks`` is an ``(N, H, W)`` boolean stack.
* points are ``(x, y)`` pixel coordinates (column, row), as Pillow uses them.

Every mask id maps to a fixed palette colour (:func:`color_for_id`), so the same object keeps its
colour in every render of a run. Each mask is tinted, outlined on its inner edge (pixels outside every
mask are never changed, apart from label boxes), and labelled with its id in a rounded box placed at the
mask's thickest point (:func:`label_anchor`). Empty masks are skipped: no tint, no outline, no label.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sam3_core.errors import UsageError

logger = logging.getLogger(__name__)

RGB = tuple[int, int, int]

#: Mask colours, indexed by ``mask_id % len(PALETTE)``. Neighbouring entries differ strongly in hue,
#: because consecutive ids are the ones most often shown together.
PALETTE: tuple[RGB, ...] = (
    (242, 36, 36), (48, 191, 48), (36, 122, 242), (255, 194, 13), (179, 65, 217),
    (20, 204, 189), (255, 121, 25), (255, 89, 172), (138, 230, 46), (138, 115, 255),
    (153, 31, 41), (97, 242, 170), (7, 96, 140), (153, 153, 31), (140, 14, 130),
    (255, 169, 140), (21, 31, 140), (94, 140, 70), (140, 236, 255), (210, 200, 255),
)  # fmt: skip

_WHITE: RGB = (255, 255, 255)
_BLACK: RGB = (0, 0, 0)
#: Side (pixels) above which a mask's crop is downscaled before the distance transform.
_ANCHOR_GRID = 128


# ----------------------------------------------------------------------------------------- colours
def color_for_id(mask_id: int) -> RGB:
    """The palette colour of ``mask_id``; the same id always gets the same colour."""
    return PALETTE[int(mask_id) % len(PALETTE)]


def relative_luminance(color: RGB) -> float:
    """WCAG relative luminance of an sRGB colour, in ``[0, 1]``."""
    channels = np.asarray(color, dtype=np.float64) / 255.0
    linear = np.where(channels <= 0.04045, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
    return float(linear @ np.array([0.2126, 0.7152, 0.0722]))


def contrast_ratio(first: RGB, second: RGB) -> float:
    """WCAG contrast ratio between two colours, from 1 (identical) to 21 (black on white)."""
    high, low = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def text_color_for(background: RGB) -> RGB:
    """White or black, whichever contrasts more with ``background`` (always a ratio of at least 4.5)."""
    if contrast_ratio(_WHITE, background) >= contrast_ratio(_BLACK, background):
        return _WHITE
    return _BLACK


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


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box ``(x0, y0, x1, y1)`` of a 2-D mask, end-exclusive, or ``None`` if it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


# ---------------------------------------------------------------------------- distance / anchors
def _chamfer_pass(dist: np.ndarray, rows: range) -> None:
    """One in-place chamfer sweep over ``rows`` (top-down or bottom-up), vectorised along each row."""
    step = 1.0 if rows.step > 0 else -1.0
    diag = math.sqrt(2.0)
    ramp = np.arange(dist.shape[1], dtype=np.float64)
    prev = None
    for i in rows:
        row = dist[i]
        if prev is not None:
            np.minimum(row, prev + 1.0, out=row)
            np.minimum(row[1:], prev[:-1] + diag, out=row[1:])
            np.minimum(row[:-1], prev[1:] + diag, out=row[:-1])
        # Propagate along the row in the sweep direction: d[j] = min_k (d[k] + |j - k|).
        if step > 0:
            row[:] = ramp + np.minimum.accumulate(row - ramp)
        else:
            row[::-1] = ramp + np.minimum.accumulate(row[::-1] - ramp)
        prev = row


def distance_transform(mask: np.ndarray) -> np.ndarray:
    """Approximate Euclidean distance of each pixel to the nearest background pixel.

    Args:
        mask: ``(H, W)`` bool; everything outside the array counts as background.

    Returns:
        ``(H, W)`` ``float64``: 0 on background, >= 1 inside the mask (a 1 / sqrt(2) chamfer metric,
        within about 8 % of the true Euclidean distance).
    """
    padded = np.pad(np.asarray(mask, dtype=bool), 1)
    dist = np.where(padded, np.inf, 0.0)
    _chamfer_pass(dist, range(dist.shape[0]))
    _chamfer_pass(dist, range(dist.shape[0] - 1, -1, -1))
    return dist[1:-1, 1:-1]


def _downscale(crop: np.ndarray, factor: int) -> np.ndarray:
    """Block-reduce a 2-D mask by ``factor``: majority vote, or 'any' if the vote leaves nothing."""
    if factor == 1:
        return crop
    h, w = crop.shape
    padded = np.pad(crop, ((0, -h % factor), (0, -w % factor)))
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    small = blocks.mean(axis=(1, 3)) >= 0.5
    return small if small.any() else blocks.any(axis=(1, 3))


def _best_cell(small: np.ndarray) -> tuple[int, int]:
    """``(row, col)`` of the thickest cell of ``small``, ties broken towards the mask's centroid."""
    dist = distance_transform(small)
    ys, xs = np.nonzero(dist >= dist.max() - 0.5)
    cy, cx = np.argwhere(small).mean(axis=0)
    best = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return int(ys[best]), int(xs[best])


def label_anchor(mask: np.ndarray) -> tuple[int, int] | None:
    """Where to put a mask's label: the mask pixel farthest from the mask's boundary.

    Works for concave, ring-shaped and fragmented masks (the point is always on the mask, unlike a
    centroid). Large masks are analysed on a downscaled grid, so the result is near-optimal and fast.

    Args:
        mask: ``(H, W)`` bool.

    Returns:
        ``(x, y)`` of a pixel with ``mask[y, x]`` true, or ``None`` for an empty mask.
    """
    mask = np.asarray(mask, dtype=bool)
    box = _bbox(mask)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    crop = mask[y0:y1, x0:x1]
    factor = max(1, math.ceil(max(crop.shape) / _ANCHOR_GRID))
    row, col = _best_cell(_downscale(crop, factor))
    # Map the chosen cell back to full resolution: the cell's mask pixel nearest the cell centre.
    block = crop[row * factor : (row + 1) * factor, col * factor : (col + 1) * factor]
    ys, xs = np.nonzero(block)
    centre = (block.shape[0] - 1) / 2.0, (block.shape[1] - 1) / 2.0
    pick = int(np.argmin((ys - centre[0]) ** 2 + (xs - centre[1]) ** 2))
    return x0 + col * factor + int(xs[pick]), y0 + row * factor + int(ys[pick])


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


def _default_font_size(height: int, width: int) -> int:
    return int(np.clip(round(min(height, width) * 0.04), 10, 72))


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` px; the fixed-size bitmap font if FreeType is unavailable."""
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):  # Pillow without FreeType, or Pillow < 10.1
        logger.debug("scalable default font unavailable; using the bitmap font")
        return ImageFont.load_default()


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The font labels are drawn in, at ``size`` px (Pillow's bundled font; cached)."""
    return _font(size)


def _tint(canvas: np.ndarray, mask: np.ndarray, color: RGB, alpha: float, outline: int) -> None:
    """Blend ``color`` into ``canvas`` (float ``(H, W, 3)``) over ``mask``, then paint its inner outline."""
    box = _bbox(mask)
    if box is None:
        return
    x0, y0, x1, y1 = box
    region = canvas[y0:y1, x0:x1]
    sub = mask[y0:y1, x0:x1]
    paint = np.asarray(color, dtype=np.float32)
    region[sub] = region[sub] * (1.0 - alpha) + paint * alpha
    if outline > 0:
        region[inner_outline(sub, outline)] = paint


def _overlaps(box: tuple[int, int, int, int], others: list[tuple[int, int, int, int]]) -> bool:
    return any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3] for o in others)


def _place_box(
    anchor: tuple[int, int], size: tuple[int, int], bounds: tuple[int, int], taken: list
) -> tuple[int, int, int, int]:
    """A ``size`` box near ``anchor``, inside ``bounds`` (W, H), avoiding ``taken`` boxes when it can."""
    bw, bh = size
    candidates = [(0, 0), (0, -bh), (0, bh), (-bw, 0), (bw, 0)]
    boxes = []
    for dx, dy in candidates:
        left = int(np.clip(anchor[0] + dx - bw // 2, 0, max(0, bounds[0] - bw)))
        top = int(np.clip(anchor[1] + dy - bh // 2, 0, max(0, bounds[1] - bh)))
        boxes.append((left, top, left + bw, top + bh))
    return next((b for b in boxes if not _overlaps(b, taken)), boxes[0])


def _draw_label(
    image: Image.Image, text: str, anchor: tuple[int, int], color: RGB, font_size: int, taken: list
) -> tuple[int, int, int, int]:
    """Draw ``text`` on ``image`` in a rounded box of ``color`` near ``anchor``; return the box used."""
    draw = ImageDraw.Draw(image)
    font = _font(font_size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(2, font_size // 5)
    height = bottom - top + 2 * pad
    size = (max(height, right - left + 2 * pad), height)  # never narrower than tall
    box = _place_box(anchor, size, image.size, taken)
    ink = text_color_for(color)
    border = max(1, font_size // 16)
    corners = (box[0], box[1], box[2] - 1, box[3] - 1)  # Pillow's rectangle end points are inclusive
    draw.rounded_rectangle(corners, radius=max(2, size[1] // 4), fill=color, outline=ink, width=border)
    draw.text((box[0] + (size[0] - right - left) // 2, box[1] + pad - top), text, fill=ink, font=font)
    return box


def _draw_labels(
    result: Image.Image, stack: np.ndarray, ids: list[int], order: np.ndarray, font_size: int
) -> None:
    """Label each mask of ``stack`` (in ``order``) with its id at its anchor; empty masks are skipped."""
    taken: list[tuple[int, int, int, int]] = []
    for index in order:
        anchor = label_anchor(stack[index])
        if anchor is None:
            logger.debug("mask id %s is empty; not labelled", ids[index])
            continue
        color = color_for_id(ids[index])
        taken.append(_draw_label(result, str(ids[index]), anchor, color, font_size, taken))


def render_masks(
    image: np.ndarray | Image.Image,
    masks: np.ndarray,
    ids: list[int],
    *,
    alpha: float = 0.45,
    outline_width: int | None = None,
    font_size: int | None = None,
    labels: bool = True,
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

    Returns:
        A new ``(W, H)`` RGB ``PIL.Image``. Larger masks are drawn first so small ones stay visible;
        empty masks are skipped. The input is not modified.
    """
    array = _as_image_array(image)
    height, width = array.shape[:2]
    stack = _as_mask_stack(masks, height, width)
    if len(ids) != len(stack):
        raise UsageError(f"got {len(stack)} masks but {len(ids)} ids")
    outline = _default_outline_width(height, width) if outline_width is None else outline_width
    canvas = array.astype(np.float32)
    order = np.argsort(-stack.sum(axis=(1, 2)), kind="stable")
    for index in order:
        _tint(canvas, stack[index], color_for_id(ids[index]), alpha, outline)
    result = Image.fromarray(np.rint(canvas).astype(np.uint8), mode="RGB")
    if labels:
        size = _default_font_size(height, width) if font_size is None else font_size
        _draw_labels(result, stack, ids, order[::-1], size)  # small masks pick label spots first
    return result


def render_single_mask(
    image: np.ndarray | Image.Image, mask: np.ndarray, mask_id: int, *, dim: float = 0.35, alpha: float = 0.4
) -> Image.Image:
    """One mask alone, highlighted for verification: the rest of the image is darkened by ``dim``.

    Args:
        image: ``(H, W, 3)`` ``uint8`` RGB (or a ``PIL.Image``).
        mask: ``(H, W)`` bool.
        mask_id: the mask's id (label text and colour).
        dim: fraction by which pixels outside the mask are darkened (0 keeps them as they are).
        alpha: tint opacity inside the mask.

    Returns:
        A new ``(W, H)`` RGB ``PIL.Image``; an empty mask gives the dimmed image with no label.
    """
    array = _as_image_array(image)
    single = _as_mask_stack(mask, *array.shape[:2])[0]
    dimmed = array.astype(np.float32)
    dimmed[~single] *= 1.0 - dim
    return render_masks(np.rint(dimmed).astype(np.uint8), single[None], [mask_id], alpha=alpha)


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
    box = _bbox(single)
    if box is None:
        logger.debug("zoomed_crop got an empty mask; returning the whole image")
        x0, y0, x1, y1 = 0, 0, width, height
    else:
        x0, y0, x1, y1 = _context_box(box, context, min_margin, width, height)
    scale = max(1.0, min_size / max(x1 - x0, y1 - y0))
    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    crop = Image.fromarray(array[y0:y1, x0:x1]).resize(size, Image.Resampling.BICUBIC)
    if box is None:
        return crop
    sub = Image.fromarray(single[y0:y1, x0:x1]).resize(size, Image.Resampling.NEAREST)
    edge = inner_outline(np.asarray(sub), outline_width or _default_outline_width(size[1], size[0]) + 1)
    out = np.array(crop)
    out[edge] = color
    out[_morph(edge, 1, grow=True) & ~edge & ~np.asarray(sub)] = _BLACK  # dark backing line
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
