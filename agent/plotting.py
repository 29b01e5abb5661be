"""Pictures and files of agent answers for people: an overlay with a legend, and a results folder.

:func:`with_legend` puts a legend band under an overlay: one swatch per mask or masklet in its palette
colour (:func:`sam3_core.drawing.color_for_id`, the colour the overlay gives that id), with its id, the
phrase that found it and its score. :func:`image_answer_picture` and :func:`video_answer_picture` draw
answers with it; :func:`write_json` writes the JSON files of :meth:`AgentAnswer.save
<agent.answers.AgentAnswer.save>` and :meth:`VideoAgentAnswer.save <agent.answers.VideoAgentAnswer.save>`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from agent.keyframes import cell_scale, choose_keyframes, contact_sheet, render_cell
from sam3_core.drawing import color_for_id, render_final
from sam3_core.postprocess import rle_to_mask
from sam3_core.video import open_video

_BAND = (250, 250, 250)
_TEXT = (20, 20, 20)
#: Pixel budget of a video answer's contact sheet.
SHEET_PIXELS = 1_600_000


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` px; the fixed-size bitmap font without FreeType."""
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):  # Pillow without FreeType
        return ImageFont.load_default()


def legend_entries(ids: Sequence[int], phrases: Sequence[str], scores: Sequence[float]) -> list[tuple[int, str]]:
    """``(id, "id  phrase (score)")`` per mask, for :func:`with_legend`."""
    return [(int(i), f'{i}  "{p}" ({s:.2f})') for i, p, s in zip(ids, phrases, scores)]


def with_legend(picture: Image.Image, entries: Sequence[tuple[int, str]], title: str) -> Image.Image:
    """``picture`` over a legend band: ``title``, then one coloured swatch and label per ``(id, label)``.

    Labels are laid out left to right and wrap onto new rows at the picture's width.
    """
    width = max(picture.width, 240)
    size = max(12, min(24, round(width / 45)))
    font, pad, swatch = _font(size), size // 2, size
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    rows: list[list[tuple[int, str, int]]] = [[]]
    x = pad
    for mask_id, label in entries:
        span = swatch + pad // 2 + int(probe.textlength(label, font=font)) + 2 * pad
        if rows[-1] and x + span > width:
            rows.append([])
            x = pad
        rows[-1].append((mask_id, label, x))
        x += span
    line = size + pad
    band = pad + line * (1 + (len(rows) if entries else 0)) + pad // 2
    out = Image.new("RGB", (width, picture.height + band), _BAND)
    out.paste(picture.convert("RGB"), (0, 0))
    draw = ImageDraw.Draw(out)
    top = picture.height + pad
    draw.text((pad, top), title, fill=_TEXT, font=font)
    for row_index, row in enumerate(rows if entries else []):
        y = top + line * (row_index + 1)
        for mask_id, label, left in row:
            draw.rectangle((left, y, left + swatch, y + swatch), fill=color_for_id(mask_id), outline=_TEXT)
            draw.text((left + swatch + pad // 2, y), label, fill=_TEXT, font=font)
    return out


def _title(query: str, status: str, count: int, noun: str) -> str:
    return f"{query!r}: {status}, {count} {noun}{'' if count == 1 else 's'}"


def image_answer_picture(pixels: np.ndarray, masks: np.ndarray, ids: Sequence[int], phrases: Sequence[str],
                         scores: Sequence[float], query: str, status: str) -> Image.Image:
    """The answer's masks (``(K, H, W)`` bool) tinted and numbered on the ``(H, W, 3)`` image, with a legend."""
    overlay = render_final(pixels, masks, list(ids))
    return with_legend(overlay, legend_entries(ids, phrases, scores), _title(query, status, len(ids), "mask"))


def _frame_masks(document: dict[str, Any], frame: int, ids: Sequence[int], size_hw: tuple[int, int]
                 ) -> tuple[np.ndarray, list[int]]:
    """The ``(N, H, W)`` masks of the masklets ``ids`` on ``frame`` in a YouTube-VIS document, and their ids."""
    found: list[int] = []
    masks: list[np.ndarray] = []
    for annotation in document.get("annotations", []):
        segmentations = annotation["segmentations"]
        rle = segmentations[frame] if frame < len(segmentations) else None
        if rle is not None and int(annotation["object_id"]) in ids:
            found.append(int(annotation["object_id"]))
            masks.append(rle_to_mask(rle))
    return (np.stack(masks) if masks else np.zeros((0, *size_hw), dtype=bool)), found


def video_answer_picture(video: Any, document: dict[str, Any], presence: dict[int, list[int]],
                         phrases: Sequence[str], scores: Sequence[float], query: str, status: str, *,
                         frames: Sequence[int] | None = None, count: int = 4) -> Image.Image:
    """A captioned contact sheet of ``frames`` of ``video`` with the chosen masklets, and a legend.

    ``presence`` maps each chosen masklet id to the frames it is on; without ``frames``, ``count``
    keyframes are chosen so that every masklet is on one when there are enough (else evenly spaced
    frames of the video).
    """
    ids = list(presence)
    source = open_video(video)
    try:
        if frames is None:
            frames = choose_keyframes(presence, count) if ids else []
            if not frames:
                step = max(1, math.ceil(source.num_frames / count))
                frames = list(range(0, source.num_frames, step))[:count]
        size_hw = (source.height, source.width)
        scale = cell_scale(source.height, source.width, len(frames), SHEET_PIXELS)
        cells = []
        for frame in frames:
            masks, shown = _frame_masks(document, frame, ids, size_hw)
            cells.append(render_cell(source.frame(frame), masks, shown, scale))
    finally:
        source.close()
    sheet = contact_sheet(cells, [f"frame {f}" for f in frames])
    return with_legend(sheet, legend_entries(ids, phrases, scores), _title(query, status, len(ids), "masklet"))


def write_json(document: dict[str, Any], path: Path) -> None:
    """Write ``document`` as indented JSON (the format the CLI writes)."""
    path.write_text(json.dumps(document, indent=1))
