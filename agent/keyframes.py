"""Keyframes of a video for a multimodal LLM: which frames to show, and a contact sheet of them.

The video agent shows the model a few frames, not the whole video: :func:`spread` picks evenly spaced
frames of the raw video, :func:`choose_keyframes` picks frames where masklets are, so that every
masklet is on at least one of them when there are enough, the rest spread out. Each keyframe is drawn
with :func:`render_cell` (the frame scaled to its share of the pixel budget, masks numbered by id with
:func:`sam3_core.drawing.render_masks`, whose colours are stable by id, so a masklet has one colour on
every keyframe), and :func:`contact_sheet` tiles the cells into one captioned grid image.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from sam3_core.drawing import font, render_masks

_SHEET_BACKGROUND = (24, 24, 24)
_CAPTION_COLOR = (255, 255, 255)
_GAP = 4


def spread(items: Sequence[int], count: int) -> list[int]:
    """``count`` items evenly spaced over ``items`` (first and last included), or all of them."""
    if len(items) <= count:
        return list(items)
    if count == 1:
        return [items[len(items) // 2]]
    positions = dict.fromkeys(round(i * (len(items) - 1) / (count - 1)) for i in range(count))
    return [items[p] for p in positions]


def choose_keyframes(presence: Mapping[int, Iterable[int]], count: int) -> list[int]:
    """Up to ``count`` frames, in order, out of the frames where the masklets of ``presence`` are.

    ``presence`` maps each masklet id to the frames it is on. First, frames are picked greedily so
    that every masklet is on at least one (the frame with the most masklets not shown yet; among equals
    the middle one); the remaining slots go to the frames farthest from those already picked.
    """
    uncovered = {i: set(frames) for i, frames in presence.items()}
    uncovered = {i: frames for i, frames in uncovered.items() if frames}
    every = sorted(set().union(*uncovered.values())) if uncovered else []
    chosen: list[int] = []
    while uncovered and len(chosen) < count:
        counts = Counter(f for frames in uncovered.values() for f in frames)
        most = max(counts.values())
        ties = sorted(f for f, n in counts.items() if n == most)
        frame = ties[len(ties) // 2]
        chosen.append(frame)
        uncovered = {i: frames for i, frames in uncovered.items() if frame not in frames}
    while len(chosen) < min(count, len(every)):
        rest = (f for f in every if f not in chosen)
        chosen.append(max(rest, key=lambda f: (min(abs(f - c) for c in chosen), -f)))
    return sorted(chosen)


def cell_scale(height: int, width: int, cells: int, max_pixels: int | None) -> float:
    """The scale (at most 1) that fits ``cells`` frames of ``height x width`` into ``max_pixels``."""
    if max_pixels is None:
        return 1.0
    return min(1.0, math.sqrt(max_pixels / (cells * height * width)))


def _resize_masks(masks: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """``(N, H, W)`` bool masks resized to ``size_hw`` by nearest neighbour."""
    height, width = masks.shape[1:]
    rows = np.minimum((np.arange(size_hw[0]) * height / size_hw[0]).astype(int), height - 1)
    cols = np.minimum((np.arange(size_hw[1]) * width / size_hw[1]).astype(int), width - 1)
    return masks[:, rows][:, :, cols]


def render_cell(frame: np.ndarray, masks: np.ndarray, ids: list[int], scale: float = 1.0) -> Image.Image:
    """One keyframe: ``frame`` scaled by ``scale`` with ``masks`` (``(N, H, W)`` bool) numbered by ``ids``."""
    height, width = frame.shape[:2]
    size_hw = (max(1, round(height * scale)), max(1, round(width * scale)))
    image = Image.fromarray(frame)
    if size_hw != (height, width):
        image = image.resize((size_hw[1], size_hw[0]), Image.Resampling.BILINEAR)
        masks = _resize_masks(masks, size_hw) if len(masks) else np.zeros((0, *size_hw), dtype=bool)
    if not ids:
        return image.convert("RGB")
    return render_masks(image, masks, ids)


def contact_sheet(cells: Sequence[Image.Image], captions: Sequence[str], columns: int | None = None) -> Image.Image:
    """Tile ``cells`` (same size) in a grid, row by row, each under a caption bar (e.g. ``"frame 12"``).

    ``columns`` defaults to a near-square grid (2 x 2 for 4 cells).
    """
    if not cells or len(cells) != len(captions):
        raise ValueError(f"need one caption per cell, got {len(cells)} cells and {len(captions)} captions")
    columns = columns or math.ceil(math.sqrt(len(cells)))
    rows = math.ceil(len(cells) / columns)
    width, height = cells[0].size
    bar = max(12, round(min(width, height) * 0.09))
    caption_font = font(max(9, bar - 3))
    sheet = Image.new("RGB", (columns * width + (columns - 1) * _GAP, rows * (height + bar) + (rows - 1) * _GAP),
                      _SHEET_BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for index, (cell, caption) in enumerate(zip(cells, captions)):
        left = (index % columns) * (width + _GAP)
        top = (index // columns) * (height + bar + _GAP)
        draw.text((left + 3, top + 2), caption, fill=_CAPTION_COLOR, font=caption_font)
        sheet.paste(cell.resize((width, height)) if cell.size != (width, height) else cell, (left, top + bar))
    return sheet
