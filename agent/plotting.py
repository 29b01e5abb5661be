"""Pictures and files of agent answers for people: an overlay with a legend, and a results folder.

The legend is :func:`sam3_core.plotting.with_legend` (the same as for engine results): a title row, then
one numbered swatch per mask or masklet in the colour the overlay gives that id, with the phrase that
found it and its score. :func:`image_answer_picture` and :func:`video_answer_picture` draw
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
from PIL import Image

from agent.keyframes import cell_scale, choose_keyframes, contact_sheet, render_cell
from sam3_core.drawing import render_final
from sam3_core.plotting import with_legend
from sam3_core.postprocess import rle_to_mask
from sam3_core.video import open_video

#: Pixel budget of a video answer's contact sheet.
SHEET_PIXELS = 1_600_000


def legend_entries(ids: Sequence[int], phrases: Sequence[str], scores: Sequence[float]) -> list[tuple[int, str]]:
    """``(id, '"phrase" (score)')`` per mask, legend rows for :func:`sam3_core.plotting.with_legend`."""
    return [(int(i), f'"{p}" ({s:.2f})') for i, p, s in zip(ids, phrases, scores)]


def _title(query: str, status: str, count: int, noun: str) -> str:
    return f"{query!r}: {status}, {count} {noun}{'' if count == 1 else 's'}"


def image_answer_picture(pixels: np.ndarray, masks: np.ndarray, ids: Sequence[int], phrases: Sequence[str],
                         scores: Sequence[float], query: str, status: str) -> Image.Image:
    """The answer's masks (``(K, H, W)`` bool) tinted and numbered on the ``(H, W, 3)`` image, with a legend."""
    overlay = render_final(pixels, masks, list(ids))
    title = _title(query, status, len(ids), "mask")
    return with_legend(overlay, [(None, title), *legend_entries(ids, phrases, scores)])


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
    return with_legend(sheet, [(None, _title(query, status, len(ids), "masklet")),
                               *legend_entries(ids, phrases, scores)])


def write_json(document: dict[str, Any], path: Path) -> None:
    """Write ``document`` as indented JSON (the format the CLI writes)."""
    path.write_text(json.dumps(document, indent=1))
