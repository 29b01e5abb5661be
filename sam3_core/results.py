"""What the engine returns: plain dataclasses of numpy arrays, easy to serialise."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import UsageError
from .images import ImageInput, load_image
from .plotting import plot_results, results_document, save_results
from .postprocess import masks_to_rle


class LazyRles:
    """``rles``: one COCO RLE (``{"size": [H, W], "counts": str}``) per row of ``masks``, computed on first
    use and kept in the ``_rles`` field of the dataclass that mixes this in."""

    masks: np.ndarray
    _rles: list[dict] | None

    @property
    def rles(self) -> list[dict]:
        if self._rles is None:
            self._rles = masks_to_rle(self.masks)
        return self._rles


@dataclass
class PhraseResult(LazyRles):
    """All instances SAM 3 found for one phrase (or one exemplar-box prompt) on one image.

    Attributes:
        phrase: the text prompt as given (``"visual"`` for a box-only prompt).
        masks: ``(N, H, W)`` bool, at the original image size.
        boxes: ``(N, 4)`` float32, pixel ``x1, y1, x2, y2`` in the original image.
        scores: ``(N,)`` float32, object score times presence score; sorted high to low.
        presence_score: probability that the concept is in the image at all.
        image_size: ``(H, W)`` of the original image.
        truncated: True when the phrase was longer than the model's 32 tokens and was cut.
    """

    phrase: str
    masks: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    presence_score: float
    image_size: tuple[int, int]
    truncated: bool = False
    _rles: list[dict] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def to_json(self) -> dict:
        """A JSON-ready dict: phrase, presence score and per instance score, box and RLE."""
        return {
            "phrase": self.phrase,
            "presence_score": round(float(self.presence_score), 6),
            "truncated": self.truncated,
            "instances": [
                {"score": round(float(score), 6), "box_xyxy": [round(float(v), 2) for v in box], "rle": rle}
                for score, box, rle in zip(self.scores, self.boxes, self.rles)
            ],
        }

    def plot(self, image: ImageInput, **options: Any) -> Image.Image:
        """This phrase's instances drawn on ``image`` (the one segmented), numbered from 1, with a legend;
        see :func:`sam3_core.plotting.plot_results` for ``options``."""
        return plot_results(image, [self], **options)

    def save(self, path: str | Path, image: ImageInput | None = None, **options: Any) -> Path:
        """Write :meth:`plot` (``.png``, ``.jpg``, ...; needs ``image``) or the JSON document (``.json``)."""
        if image is None and Path(path).suffix.lower() != ".json":
            raise UsageError("saving a picture needs the image: result.save(path, image)")
        return save_results(path, image, [self], **options)


class SegmentationResults(list[PhraseResult]):
    """The results of one :meth:`Sam3Engine.segment` call together with their image, so they can draw
    themselves: a plain list of :class:`PhraseResult` (one per phrase) with an ``image`` attribute.

    ``SegmentationResults(image, engine.segment(image, ["dog", "cat"])).plot()`` gives the overlay with
    its legend; ``.save("out.png")`` / ``.save("out.json")`` write it. Instance ids run from 1 across all
    phrases in order, the same in the picture, its legend and the JSON.
    """

    def __init__(self, image: ImageInput, results: Iterable[PhraseResult] = ()) -> None:
        super().__init__(results)
        #: ``(H, W, 3)`` uint8 RGB of the segmented image.
        self.image: np.ndarray = load_image(image).pixels

    def plot(self, **options: Any) -> Image.Image:
        """The overlay with its legend (see :func:`sam3_core.plotting.plot_results` for ``options``)."""
        return plot_results(self.image, self, **options)

    def save(self, path: str | Path, **options: Any) -> Path:
        """Write the overlay (``.png``, ``.jpg``, ``.webp``) or the JSON document (``.json``); returns ``path``."""
        return save_results(path, self.image, self, **options)

    def to_json(self) -> dict[str, Any]:
        """``{"image": {"height", "width"}, "results": [...]}``, each instance with its ``id``."""
        return results_document(self, self.image.shape[:2])


@dataclass
class RefineResult:
    """One object's mask from clicks and/or a box (SAM 2-style promptable segmentation).

    Attributes:
        mask: ``(H, W)`` bool at the original image size.
        score: the model's predicted IoU of the mask.
        box: ``(4,)`` float32 tight pixel ``x1, y1, x2, y2`` of the mask (x2/y2 exclusive), zeros if empty.
        low_res_logits: ``(h, w)`` float32 mask logits at the model's low resolution; pass them back as
            ``mask_input`` to refine the same object with more clicks.
        image_size: ``(H, W)``.
    """

    mask: np.ndarray
    score: float
    box: np.ndarray
    low_res_logits: np.ndarray
    image_size: tuple[int, int]

    @property
    def rle(self) -> dict:
        return masks_to_rle(self.mask[None])[0]

    def to_json(self) -> dict:
        return {"score": round(float(self.score), 6), "box_xyxy": [round(float(v), 2) for v in self.box],
                "rle": self.rle}
