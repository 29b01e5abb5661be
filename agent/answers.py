"""What the agents return: :class:`AgentAnswer` (an image query) and :class:`VideoAgentAnswer` (a video query).

Both carry how the query ended (:class:`AnswerStatus`: ``ok``, ``raise_for_status``), the answer, the
LLM usage and the step-by-step trace, and both can be looked at and kept::

    answer.plot()                      # a PIL image: the overlay with a legend of ids, phrases, scores
    answer.save("out/")                # image: mask.png, overlay.png, result.json, trace.json
                                       # video: result.json, trace.json

:class:`AgentRunFailed` (and :class:`VideoAgentRunFailed`) is raised when the LLM endpoint fails; it
carries the answer so far.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from agent.llm import Usage
from agent.plotting import image_answer_picture, video_answer_picture, write_json
from agent.state import Status
from sam3_core.drawing import render_final
from sam3_core.errors import RunFailed, UsageError
from sam3_core.images import ImageInput, LoadedImage, load_image
from sam3_core.postprocess import masks_to_rle
from sam3_core.video.outputs import frame_masks


class AnswerStatus:
    """``ok`` / ``raise_for_status`` for answers that have ``query``, ``status`` and ``error`` (image and video)."""

    query: str
    status: Status
    error: str

    @property
    def ok(self) -> bool:
        """True when the model gave an answer (masks, or that there is none)."""
        return self.status in ("answered", "no_mask")

    def raise_for_status(self) -> None:
        """Raise :class:`RunFailed` (``cause`` = status) unless :attr:`ok`."""
        if not self.ok:
            raise RunFailed(f"query {self.query!r} ended without an answer: {self.error}", cause=self.status)


@dataclass
class AgentAnswer(AnswerStatus):
    """The outcome of one query.

    Attributes:
        query: the query as given.
        status: ``answered``, ``no_mask``, ``budget_exhausted`` or ``failed`` (see :data:`agent.state.Status`).
        mask_ids: ids of the answer's masks: the chosen masks when ``answered``; the **best answer so
            far** when ``budget_exhausted`` -- the candidates accepted by ``examine_each_mask`` during
            this query if any, otherwise the highest-scoring candidate (not rejected) found by a phrase
            of this query, otherwise none (see :mod:`agent.limits`); empty for ``no_mask`` and ``failed``.
        masks: ``(K, H, W)`` bool, one per id. boxes: ``(K, 4)`` float32 pixel ``x1, y1, x2, y2``.
        scores: SAM 3 score per mask. phrases: the phrase that found each mask.
        error: why there is no answer (``budget_exhausted``: names the limit and its value; ``failed``);
            empty otherwise.
        steps: main-loop LLM replies used. verify_calls: verification questions asked.
        phrases_tried: phrases sent to SAM 3 for this query.
        thread_id: the thread to continue with a follow-up query.
        usage: LLM tokens and calls of this query (verification included).
        cause: in a word, why the query ended without an answer: the limit (``max_steps``,
            ``max_seconds``, ``max_tokens``) for ``budget_exhausted``; ``invalid_replies`` or the LLM
            failure's cause (``llm_timeout``, ...) for ``failed``; empty otherwise.
        trace: one record per graph node run, with timings (see :mod:`agent.trace` for the keys).
        timings: the query's totals: ``wall_s``, ``model_s``, ``sam_s``, ``verify_s``, ``overhead_s``,
            ``step_overhead_s``, ``model_calls``, ``tokens``, ... (see :func:`agent.trace.totals`).
        image: the image the query ran on (for :meth:`plot` and :meth:`save`; None for answers made
            elsewhere). source: the image's path as given (empty for images in memory).
    """

    query: str
    status: Status
    mask_ids: list[int]
    masks: np.ndarray
    boxes: np.ndarray
    scores: list[float]
    phrases: list[str]
    error: str
    steps: int
    verify_calls: int
    phrases_tried: list[str]
    thread_id: str
    usage: Usage
    cause: str = ""
    trace: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)
    image: LoadedImage | None = field(default=None, repr=False, compare=False)
    source: str = ""

    @property
    def mask(self) -> np.ndarray:
        """The union of the answer's masks, ``(H, W)`` bool (all False when there are none)."""
        return self.masks.any(axis=0)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (no mask arrays; boxes in pixels; the timings but not the trace)."""
        return {
            "query": self.query, "status": self.status, "mask_ids": self.mask_ids, "error": self.error,
            "cause": self.cause, "boxes": [[round(float(v), 1) for v in box] for box in self.boxes],
            "scores": self.scores, "phrases": self.phrases, "steps": self.steps, "verify_calls": self.verify_calls,
            "phrases_tried": self.phrases_tried, "thread_id": self.thread_id, "usage": dataclasses.asdict(self.usage),
            "timings": dict(self.timings),
        }

    def trace_json(self) -> dict[str, Any]:
        """The JSON-ready trace document: how the query ended, its timings and one record per node run."""
        return {
            "query": self.query, "status": self.status, "cause": self.cause, "error": self.error,
            "mask_ids": self.mask_ids, "thread_id": self.thread_id, "timings": dict(self.timings),
            "steps": [dict(record) for record in self.trace],
        }

    def _pixels(self, image: ImageInput | LoadedImage | None) -> np.ndarray:
        """The ``(H, W, 3)`` pixels to draw on: ``image`` when given, else the answer's own image."""
        if image is not None:
            return load_image(image).pixels
        if self.image is None:
            raise UsageError("this answer carries no image (it was not made by run_agent); pass image=...")
        return self.image.pixels

    def plot(self, image: ImageInput | LoadedImage | None = None) -> Image.Image:
        """The answer as a picture: its masks tinted and numbered by id on the image, over a legend
        of ids, phrases and scores (a ``PIL.Image``; the query's status is in the legend's title)."""
        pixels = self._pixels(image)
        if self.masks.shape[1:] != pixels.shape[:2] and len(self.masks):
            raise UsageError(f"image is {pixels.shape[1]}x{pixels.shape[0]}, the masks are "
                             f"{self.masks.shape[2]}x{self.masks.shape[1]}")
        return image_answer_picture(pixels, self.masks, self.mask_ids, self.phrases, self.scores, self.query,
                                    self.status)

    def result_json(self, image: ImageInput | LoadedImage | None = None) -> dict[str, Any]:
        """result.json: the image's path and size, :meth:`to_json`, and the masks as COCO RLE (``rles``)."""
        height, width = self._pixels(image).shape[:2]
        return {"image": self.source, "image_size": {"height": height, "width": width}, **self.to_json(),
                "rles": masks_to_rle(self.masks)}

    def save(self, folder: str | os.PathLike, image: ImageInput | LoadedImage | None = None, *,
             legend: bool = True) -> Path:
        """Write the answer's files into ``folder`` (created when missing); returns the folder.

        ``mask.png``: the union of the masks (0/255, image size). ``overlay.png``: :meth:`plot` (the
        overlay over a legend band); with ``legend=False`` the overlay alone, the size of the image, as
        ``sam3-agent segment`` writes it. ``result.json``: :meth:`result_json`. ``trace.json``:
        :meth:`trace_json`.
        """
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        write_json(self.result_json(image), out / "result.json")
        write_json(self.trace_json(), out / "trace.json")
        pixels = self._pixels(image)
        union = self.mask if len(self.masks) else np.zeros(pixels.shape[:2], dtype=bool)
        Image.fromarray(union.astype(np.uint8) * 255).save(out / "mask.png")
        overlay = self.plot(image) if legend else render_final(pixels, self.masks, self.mask_ids)
        overlay.save(out / "overlay.png")
        return out


class AgentRunFailed(RunFailed):
    """The LLM endpoint failed during a query; ``answer`` is the query so far (status ``failed``).

    ``cause`` is the endpoint failure's cause (``llm_timeout``, ``llm_unavailable``, ...); ``trace`` and
    ``timings`` are the answer's, so a caller can still save the trace.
    """

    def __init__(self, message: str, *, cause: str, answer: AgentAnswer) -> None:
        super().__init__(message, cause=cause)
        self.answer = answer

    @property
    def trace(self) -> list[dict[str, Any]]:
        """The trace of the query up to the failure (the failed call included)."""
        return self.answer.trace

    @property
    def timings(self) -> dict[str, Any]:
        """The totals of :attr:`trace`."""
        return self.answer.timings


@dataclass
class VideoAgentAnswer(AnswerStatus):
    """The outcome of one video query.

    Attributes:
        query: the query as given. status: as for images (:data:`agent.state.Status`).
        masklet_ids: the chosen masklets (``answered``), the best answer so far (``budget_exhausted``:
            the highest-scoring masklet of this query), else empty.
        phrases / scores: per chosen masklet, the phrase that found it and its best detection score.
        document: the chosen masklets on every frame of the video where they are, YouTube-VIS-style
            (:mod:`sam3_core.video.outputs`); each annotation's ``object_id`` is the masklet id.
        error / cause: why there is no answer (empty when answered).
        steps: main-loop LLM replies. phrases_tried: phrases tracked. refinements: ``refine_masklet`` calls
            that changed a masklet.
        usage: LLM tokens and calls. trace: one record per graph node run (:mod:`agent.trace`).
        timings: the trace's totals, plus ``complete_s``: tracking the chosen masklets to the video's end.
        video: the video as given to the agent (a file, a folder of frames or frames in memory), for
            :meth:`plot`; None for answers made elsewhere.
    """

    query: str
    status: Status
    masklet_ids: list[int]
    phrases: list[str]
    scores: list[float]
    document: dict[str, Any]
    error: str
    steps: int
    phrases_tried: list[str]
    refinements: int
    usage: Usage
    cause: str = ""
    trace: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)
    video: Any = field(default=None, repr=False, compare=False)

    def frame_masks(self, frame_index: int) -> tuple[np.ndarray | None, list[int]]:
        """The ``(N, H, W)`` bool masks of the chosen masklets on one frame and their ids (None, [] if none)."""
        return frame_masks(self.document, frame_index)

    def frames(self) -> dict[int, list[int]]:
        """Frame index -> ids of the chosen masklets on it, for the frames that have any."""
        out: dict[int, list[int]] = {}
        for annotation in self.document.get("annotations", []):
            for index, rle in enumerate(annotation["segmentations"]):
                if rle is not None:
                    out.setdefault(index, []).append(int(annotation["object_id"]))
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, Any]:
        """result.json: the summary, then the YouTube-VIS-style ``videos``, ``categories``, ``annotations``."""
        return {
            "query": self.query, "status": self.status, "masklet_ids": self.masklet_ids, "phrases": self.phrases,
            "scores": self.scores, "error": self.error, "cause": self.cause, "steps": self.steps,
            "phrases_tried": self.phrases_tried, "refinements": self.refinements,
            "usage": dataclasses.asdict(self.usage), "timings": dict(self.timings), **self.document,
        }

    def trace_json(self) -> dict[str, Any]:
        """The JSON-ready trace document: how the query ended, its timings and one record per node run."""
        return {
            "query": self.query, "status": self.status, "cause": self.cause, "error": self.error,
            "masklet_ids": self.masklet_ids, "timings": dict(self.timings),
            "steps": [dict(record) for record in self.trace],
        }

    def plot(self, frames: Sequence[int] | None = None, *, count: int = 4, video: Any = None) -> Image.Image:
        """The answer as a picture: a captioned contact sheet of frames with the chosen masklets numbered
        by id, over a legend of ids, phrases and scores (a ``PIL.Image``).

        ``frames``: the frame indices to show; by default ``count`` keyframes on which every chosen
        masklet appears when there are enough. ``video``: the video, when the answer does not carry it.
        """
        video = video if video is not None else self.video
        if video is None:
            raise UsageError("this answer carries no video (it was not made by run_video_agent); pass video=...")
        presence: dict[int, list[int]] = {i: [] for i in self.masklet_ids}
        for frame, ids in self.frames().items():
            for masklet_id in ids:
                presence.setdefault(masklet_id, []).append(frame)
        return video_answer_picture(video, self.document, presence, self.phrases, self.scores, self.query,
                                    self.status, frames=frames, count=count)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``result.json`` (:meth:`to_json`) and ``trace.json`` (:meth:`trace_json`) into ``folder``
        (created when missing); returns the folder. ``plot().save(...)`` adds a picture."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        write_json(self.to_json(), out / "result.json")
        write_json(self.trace_json(), out / "trace.json")
        return out


class VideoAgentRunFailed(AgentRunFailed):
    """The LLM endpoint failed during a video query; ``answer`` is the :class:`VideoAgentAnswer` so far."""


def failure_documents(query: str, exc: BaseException) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(result, trace)`` JSON documents for a query that ended in ``exc``, so a command line can write
    result.json and trace.json whatever the ending.

    An :class:`AgentRunFailed` (or :class:`VideoAgentRunFailed`) gives its answer's documents (status
    ``failed``, the cause, the trace so far); any other error a ``failed`` summary naming it, with an empty trace.
    """
    answer = getattr(exc, "answer", None)
    if isinstance(answer, (AgentAnswer, VideoAgentAnswer)):
        return answer.to_json(), answer.trace_json()
    cause = getattr(exc, "cause", "") or type(exc).__name__
    summary = {"query": query, "status": "failed", "cause": cause, "error": str(exc)}
    return {**summary, "mask_ids": []}, {**summary, "steps": []}
