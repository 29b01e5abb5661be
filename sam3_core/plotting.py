"""Results people can look at: the engine's masks drawn on the image, with a legend of phrases and ids.

:func:`plot_results` numbers the instances of all phrases ``1, 2, ...`` (phrase by phrase, best score
first, as :meth:`Sam3Engine.segment` returns them), draws them with :func:`sam3_core.drawing.render_masks`
(each id keeps its palette colour) and puts a legend panel to the right of the image: one row per id
with its colour swatch, phrase and score, and one grey row per phrase that found nothing. The legend
uses exactly the colours of the masks, so an id can be matched by colour or by number.
:func:`save_results` writes the picture (``.png``, ``.jpg``, ...) or the JSON document (``.json``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from sam3_core.drawing import color_for_id, font, render_masks, text_color_for
from sam3_core.errors import UsageError
from sam3_core.images import ImageInput, load_image

if TYPE_CHECKING:
    from sam3_core.results import PhraseResult

logger = logging.getLogger(__name__)

#: Legend colours: panel background, text, and the text of phrases that found nothing.
_PANEL = (250, 250, 250)
_INK = (20, 20, 20)
_MUTED = (120, 120, 120)
#: Most rows the legend lists; the rest are summarised in one line.
MAX_LEGEND_ROWS = 60


def _pixels(image: ImageInput | np.ndarray | Image.Image) -> np.ndarray:
    """``(H, W, 3)`` uint8 of anything :func:`sam3_core.images.load_image` reads."""
    return load_image(image).pixels


def numbered(results: Sequence[PhraseResult]) -> list[tuple[int, str, float, int]]:
    """``(id, phrase, score, index)`` per instance, ids from 1 across all phrases (``index`` within its phrase)."""
    rows, next_id = [], 1
    for result in results:
        for index, score in enumerate(result.scores):
            rows.append((next_id, result.phrase, float(score), index))
            next_id += 1
    return rows


def _legend_lines(results: Sequence[PhraseResult]) -> list[tuple[int | None, str]]:
    """``(id or None, text)`` per legend row; ``None`` rows are notes (a phrase with no instance, overflow)."""
    lines: list[tuple[int | None, str]] = []
    rows = numbered(results)
    for mask_id, phrase, score, _ in rows[:MAX_LEGEND_ROWS]:
        lines.append((mask_id, f"{phrase}  {score:.2f}"))
    if len(rows) > MAX_LEGEND_ROWS:
        lines.append((None, f"... and {len(rows) - MAX_LEGEND_ROWS} more"))
    for result in results:
        if len(result) == 0:
            lines.append((None, f"{result.phrase}: none (presence {float(result.presence_score):.2f})"))
    return lines or [(None, "no phrases")]


def _legend(lines: Sequence[tuple[int | None, str]], size: int, min_height: int) -> Image.Image:
    """The legend panel: a coloured, numbered swatch and the text of each row, ``size`` px text."""
    face = font(size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad, row = max(4, size // 2), size + max(6, size // 2)
    swatch = max(size + 6, int(row * 0.9))
    widths = [probe.textbbox((0, 0), text, font=face)[2] for _, text in lines]
    width = pad * 3 + swatch + max(widths)
    panel = Image.new("RGB", (width, max(min_height, pad * 2 + row * len(lines))), _PANEL)
    draw = ImageDraw.Draw(panel)
    for line, (mask_id, text) in enumerate(lines):
        top = pad + line * row
        if mask_id is not None:
            color = color_for_id(mask_id)
            draw.rectangle((pad, top, pad + swatch - 1, top + row - 3), fill=color)
            draw.text((pad + swatch // 2, top + (row - 2) // 2), str(mask_id), fill=text_color_for(color),
                      font=face, anchor="mm")
        draw.text((pad * 2 + swatch, top + (row - 2) // 2), text, fill=_INK if mask_id is not None else _MUTED,
                  font=face, anchor="lm")
    return panel


def plot_results(image: ImageInput | np.ndarray | Image.Image, results: Sequence[PhraseResult], *,
                 legend: bool = True, alpha: float = 0.45, font_size: int | None = None) -> Image.Image:
    """The image with every instance of ``results`` drawn and numbered, and a legend to its right.

    Args:
        image: the image the results are of: path, bytes, PIL image or ``(H, W, 3)`` uint8 array.
        results: :class:`PhraseResult` per phrase, as :meth:`Sam3Engine.segment` returns them.
        legend: add the legend panel (without it the picture has exactly the image's size).
        alpha: mask tint opacity.
        font_size: text size of labels and legend (default: scaled with the image, at least 12 px).

    Returns:
        An RGB ``PIL.Image``: ``(W + legend width, max(H, legend height))``; the image sits at the top left.
    """
    pixels = _pixels(image)
    height, width = pixels.shape[:2]
    for result in results:
        if tuple(result.masks.shape[1:]) != (height, width):
            raise UsageError(f"the masks of {result.phrase!r} are {tuple(result.masks.shape[1:])} but the image is "
                             f"{(height, width)}: plot the results on the image they came from")
    stack = np.concatenate([r.masks for r in results]) if results else np.zeros((0, height, width), bool)
    ids = [mask_id for mask_id, *_ in numbered(results)]
    size = font_size or int(np.clip(round(min(height, width) * 0.04), 12, 48))
    overlay = render_masks(pixels, stack, ids, alpha=alpha, font_size=size)
    return with_legend(overlay, _legend_lines(results), size) if legend else overlay


def with_legend(picture: Image.Image, lines: Sequence[tuple[int | None, str]], size: int | None = None) -> Image.Image:
    """``picture`` with a legend panel to its right: per ``(id, text)`` row a numbered swatch in the id's colour
    (:func:`sam3_core.drawing.color_for_id`, as the overlays draw it) and the text; ``(None, text)`` rows are notes.

    Returns an RGB image ``(W + legend width, max(H, legend height))`` with ``picture`` at the top left.
    """
    size = size or int(np.clip(round(min(picture.size) * 0.04), 12, 48))
    panel = _legend(lines, size, picture.height)
    canvas = Image.new("RGB", (picture.width + panel.width, max(picture.height, panel.height)), _PANEL)
    canvas.paste(picture.convert("RGB"), (0, 0))
    canvas.paste(panel, (picture.width, 0))
    return canvas


def results_document(results: Sequence[PhraseResult], image_size: tuple[int, int]) -> dict[str, Any]:
    """JSON-ready document: the image size (``width``, ``height``) and each phrase's :meth:`PhraseResult.to_json`,
    its instances carrying the ids of :func:`plot_results`."""
    phrases, next_id = [], 1
    for result in results:
        document = result.to_json()
        for instance in document["instances"]:
            instance["id"], next_id = next_id, next_id + 1
        phrases.append(document)
    return {"image": {"height": image_size[0], "width": image_size[1]}, "results": phrases}


def save_results(path: str | Path, image: ImageInput | np.ndarray | Image.Image,
                 results: Sequence[PhraseResult], **plot_options: Any) -> Path:
    """Write ``results`` to ``path``: the JSON document for ``.json``, else the :func:`plot_results` picture in
    the format of the suffix (``.png``, ``.jpg``, ``.webp``). Returns the path written."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        size = tuple(results[0].image_size) if results else _pixels(image).shape[:2]
        path.write_text(json.dumps(results_document(results, size), indent=1))
    else:
        if path.suffix.lower() not in Image.registered_extensions():
            raise UsageError(f"cannot tell the format of {path.name!r}: end it in .png, .jpg, .webp or .json")
        plot_results(image, results, **plot_options).save(path)
    logger.debug("saved %d phrase result(s) to %s", len(results), path)
    return path
