"""What the engine returns: plain dataclasses of numpy arrays, easy to serialise."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
