"""Benchmarks as evaluation tasks: their queries, how one answer is scored, and how a run is summed up.

A :class:`TaskSpec` (stored in ``run.json``) names a dataset, where it is and which split; :func:`load_task`
turns it into a :class:`Task`:

* :class:`ReasonSegTask` and :class:`RefCocoTask` score the union of the chosen masks against the
  target with LISA's intersection / union (ReasonSeg's ignore region left out), and sum up a run as
  gIoU / cIoU overall and per group (ReasonSeg: ``short`` and ``long``);
* :class:`OmniLabelTask` asks one query per (image, description) pair and turns each chosen mask into
  one detection in the OmniLabel toolkit's format (tight ``[x, y, w, h]`` box, ``description_ids``,
  ``scores`` = SAM 3's score of the mask), summed up as AP per group and their harmonic mean.

:meth:`Task.score` is the single place where a prediction becomes numbers: the runner calls it when a
sample finishes, and ``eval score`` calls it again on the masks stored in ``predictions.jsonl``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from eval.datasets.omnilabel import OmniLabelData, load_omnilabel
from eval.datasets.reasonseg import load_reasonseg
from eval.datasets.refcoco import SCHEMES_BY_DATASET, load_refcoco
from eval.metrics import IoUAccumulator, IoURecord, intersection_and_union
from eval.omnilabel_ap import evaluate_omnilabel
from sam3_core.drawing import render_final
from sam3_core.errors import InputError
from sam3_core.postprocess import masks_to_boxes, rle_to_mask

if TYPE_CHECKING:
    from agent.runner import AgentAnswer
    from eval.planners import DirectSettings

logger = logging.getLogger(__name__)

DATASETS = ("reasonseg", "refcoco", "omnilabel", "saco", "saco_video")


@dataclass(frozen=True)
class TaskSpec:
    """Which benchmark: ``dataset`` (one of :data:`DATASETS`), ``data`` path, ``split`` and extra options.

    Options: RefCOCO ``variant`` (refcoco, refcoco+, refcocog), ``split_by`` and ``image_dir``;
    OmniLabel ``image_dir``. ``data`` is the dataset folder (OmniLabel: the ground-truth JSON, or a
    folder holding ``<split>.json``).
    """

    dataset: str
    data: str
    split: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, inverse of :meth:`from_dict`."""
        return {"dataset": self.dataset, "data": self.data, "split": self.split, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskSpec:
        """Rebuild a spec written by :meth:`to_dict`."""
        try:
            return cls(str(data["dataset"]), str(data["data"]), str(data["split"]), dict(data.get("options", {})))
        except (KeyError, TypeError) as exc:
            raise InputError(f"malformed task in run.json: {data!r}") from exc


@dataclass(frozen=True)
class EvalItem:
    """One query of a benchmark: id (unique in the split), text, image file, groups and the dataset sample."""

    id: str
    query: str
    image_path: Path
    groups: tuple[str, ...]
    sample: Any


class Task:
    """Base class of the benchmarks; subclasses load items and score masks."""

    #: Name of the running metric shown by the progress bar (None: nothing shown).
    progress_name: str | None = None
    #: True when every chosen mask is scored as a ranked detection (AP), not as one region.
    ranked_detections: bool = False
    #: The planners that can answer this task's queries.
    planners: tuple[str, ...] = ("agent", "direct")

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self._items: list[EvalItem] | None = None

    def items(self) -> list[EvalItem]:
        """Every query of the split, in the dataset's order (loaded once)."""
        if self._items is None:
            self._items = self._load_items()
            ids = [item.id for item in self._items]
            if len(set(ids)) != len(ids):
                raise InputError(f"{self.spec.dataset} {self.spec.split}: sample ids are not unique")
        return list(self._items)

    def _load_items(self) -> list[EvalItem]:
        raise NotImplementedError

    def score(self, item: EvalItem, masks: np.ndarray, scores: Sequence[float]) -> dict[str, Any]:
        """Per-sample result fields of a prediction (``(K, H, W)`` chosen masks, one score each)."""
        raise NotImplementedError

    def score_record(self, item: EvalItem, record: Mapping[str, Any], masks: np.ndarray | None = None) -> dict:
        """:meth:`score` of a stored record (``masks``: its decoded masks when the caller has them)."""
        if masks is None:
            rles = record.get("masks", [])
            masks = np.stack([rle_to_mask(r) for r in rles]) if rles else np.zeros((0, 1, 1), dtype=bool)
        return self.score(item, masks, record.get("scores", []))

    async def direct(self, engine: Any, item: EvalItem, settings: DirectSettings) -> AgentAnswer:
        """The ``direct`` planner's answer (SAM 3 alone on the query's noun phrase)."""
        from eval.planners import direct_answer

        return await direct_answer(engine, item.image_path, item.query, settings)

    def quality(self, item: EvalItem, fields: Mapping[str, Any]) -> float:
        """How good one scored sample is, in ``[0, 1]``; the lowest are the "worst cases"."""
        raise NotImplementedError

    def summarize(self, scored: Sequence[tuple[EvalItem, Mapping[str, Any]]]) -> dict[str, Any]:
        """The run's metrics from every scored sample (item and its :meth:`score` fields)."""
        raise NotImplementedError

    def progress_value(self, scored: Sequence[Mapping[str, Any]]) -> float | None:
        """The running metric for the progress bar from :meth:`score` fields (None: not shown)."""
        return None

    def draw_target(self, item: EvalItem, pixels: np.ndarray) -> Image.Image:
        """The image with the ground truth drawn on it."""
        raise NotImplementedError

    def draw_prediction(self, item: EvalItem, pixels: np.ndarray, masks: np.ndarray) -> Image.Image:
        """The image with the predicted masks drawn on it."""
        return render_final(pixels, masks)


def _fit(pred: np.ndarray, shape: tuple[int, int], item_id: str) -> np.ndarray:
    """``pred`` at ``shape`` (nearest-neighbour resize, with a warning, when the sizes differ)."""
    if pred.shape == shape:
        return pred
    logger.warning("sample %s: prediction is %s but the target is %s; resizing the prediction",
                   item_id, pred.shape, shape)
    image = Image.fromarray(pred.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.Resampling.NEAREST)
    return np.asarray(image) > 127


class SegTask(Task):
    """Mask benchmarks scored with LISA's gIoU / cIoU."""

    progress_name = "gIoU"

    def target(self, item: EvalItem) -> tuple[np.ndarray, np.ndarray | None]:
        """Target mask and ignore mask (or None) of ``item``."""
        raise NotImplementedError

    def score(self, item: EvalItem, masks: np.ndarray, scores: Sequence[float]) -> dict[str, Any]:
        target, ignore = self.target(item)
        pred = masks.any(axis=0) if len(masks) else np.zeros(target.shape, dtype=bool)
        intersection, union = intersection_and_union(_fit(pred, target.shape, item.id), target, ignore)
        record = IoURecord(item.id, intersection, union, item.groups)
        return {"intersection": intersection, "union": union, "iou": record.iou}

    def quality(self, item: EvalItem, fields: Mapping[str, Any]) -> float:
        return float(fields["iou"])

    def summarize(self, scored: Sequence[tuple[EvalItem, Mapping[str, Any]]]) -> dict[str, Any]:
        acc = IoUAccumulator.from_records(
            IoURecord(item.id, int(f["intersection"]), int(f["union"]), item.groups) for item, f in scored
        )
        return {
            name: {"gIoU": s.giou, "cIoU": s.ciou, "count": s.count, "intersection": s.intersection,
                   "union": s.union}
            for name, s in acc.summary().items()
        }

    def progress_value(self, scored: Sequence[Mapping[str, Any]]) -> float | None:
        return float(np.mean([f["iou"] for f in scored])) if scored else None

    def draw_target(self, item: EvalItem, pixels: np.ndarray) -> Image.Image:
        target, ignore = self.target(item)
        shown = render_final(pixels, _fit(target, pixels.shape[:2], item.id)[None])
        if ignore is not None and ignore.any():
            array = np.array(shown)
            array[_fit(ignore, pixels.shape[:2], item.id)] = (128, 128, 128)  # ignored pixels in grey
            shown = Image.fromarray(array)
        return shown


class ReasonSegTask(SegTask):
    """ReasonSeg: groups ``short`` / ``long`` (phrase or sentence queries)."""

    def _load_items(self) -> list[EvalItem]:
        samples = load_reasonseg(self.spec.data, self.spec.split)
        return [EvalItem(s.id, s.query, s.image_path, (s.group,), s) for s in samples]

    def target(self, item: EvalItem) -> tuple[np.ndarray, np.ndarray | None]:
        seg = item.sample.load_target()
        return seg.mask, seg.ignore


class RefCocoTask(SegTask):
    """RefCOCO / RefCOCO+ / RefCOCOg: one query per sentence, target = the ref's annotation(s)."""

    def _load_items(self) -> list[EvalItem]:
        opts = self.spec.options
        samples = load_refcoco(self.spec.data, opts["variant"], opts["split_by"], self.spec.split,
                               image_dir=opts.get("image_dir"))
        return [EvalItem(s.id, s.query, s.image_path, (), s) for s in samples]

    def target(self, item: EvalItem) -> tuple[np.ndarray, np.ndarray | None]:
        return item.sample.load_target(), None


def omnilabel_paths(data: str | Path, split: str, image_dir: str | None) -> tuple[Path, Path]:
    """Ground-truth JSON and image root: ``data`` itself if a file, else ``<data>/<split>.json``."""
    path = Path(data)
    gt = path if path.is_file() else path / f"{split}.json"
    if not gt.is_file():
        raise InputError(f"OmniLabel ground truth not found: {gt} (pass the JSON file or a folder with {split}.json)")
    return gt, Path(image_dir) if image_dir else gt.parent


def _box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``[x, y, w, h]`` boxes."""
    return float(mask_utils.iou([list(a)], [list(b)], [0])[0][0])


class OmniLabelTask(Task):
    """OmniLabel: one query per (image, description), answers scored as box detections (AP)."""

    ranked_detections = True

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)
        gt, images = omnilabel_paths(spec.data, spec.split, spec.options.get("image_dir"))
        self.data: OmniLabelData = load_omnilabel(gt, images)

    def _load_items(self) -> list[EvalItem]:
        return [
            EvalItem(s.id, s.query, s.image_path, ("categ",) if s.is_category else ("descr",), s)
            for s in self.data.samples()
        ]

    def score(self, item: EvalItem, masks: np.ndarray, scores: Sequence[float]) -> dict[str, Any]:
        detections = []
        for box, score in zip(masks_to_boxes(masks.astype(bool)).tolist(), scores, strict=True):
            x1, y1, x2, y2 = box
            if x2 > x1 and y2 > y1:  # an empty mask has no box
                detections.append({"image_id": item.sample.image_id, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                   "description_ids": [item.sample.description_id], "scores": [float(score)]})
        return {"detections": detections}

    def quality(self, item: EvalItem, fields: Mapping[str, Any]) -> float:
        """Mean over ground-truth boxes of the best box IoU; without boxes 1 if nothing was detected, else 0."""
        boxes = [d["bbox"] for d in fields["detections"]]
        if not item.sample.boxes:
            return 0.0 if boxes else 1.0
        best = [max((_box_iou(b, gt) for b in boxes), default=0.0) for gt in item.sample.boxes]
        return float(np.mean(best))

    def summarize(self, scored: Sequence[tuple[EvalItem, Mapping[str, Any]]]) -> dict[str, Any]:
        pairs = {(item.sample.image_id, item.sample.description_id) for item, _ in scored}
        predictions = [d for _, f in scored for d in f["detections"]]
        if not pairs:
            return {}
        if not self.data.has_boxes:
            return {"note": "the ground truth has no boxes (a test split?): AP not computed", "pairs": len(pairs)}
        everything = {(item.sample.image_id, item.sample.description_id) for item in self.items()}
        gt = self.data.raw if pairs == everything else subset_ground_truth(self.data.raw, pairs)
        result = evaluate_omnilabel(gt, predictions).as_dict()
        result["pairs"] = len(pairs)
        return result

    def draw_target(self, item: EvalItem, pixels: np.ndarray) -> Image.Image:
        return draw_boxes(Image.fromarray(pixels), item.sample.boxes, (0, 200, 0))

    def draw_prediction(self, item: EvalItem, pixels: np.ndarray, masks: np.ndarray) -> Image.Image:
        fields = self.score(item, masks, [0.0] * len(masks))
        return draw_boxes(render_final(pixels, masks), [d["bbox"] for d in fields["detections"]], (230, 30, 30))


def draw_boxes(image: Image.Image, boxes: Sequence[Sequence[float]], color: tuple[int, int, int]) -> Image.Image:
    """A copy of ``image`` with ``[x, y, w, h]`` boxes outlined."""
    out = image.convert("RGB").copy()
    pen = ImageDraw.Draw(out)
    width = max(1, round(max(out.size) / 200))
    for x, y, w, h in boxes:
        pen.rectangle([x, y, x + max(w - 1, 0), y + max(h - 1, 0)], outline=color, width=width)
    return out


def subset_ground_truth(gt: Mapping[str, Any], pairs: set[tuple[int, int]]) -> dict[str, Any]:
    """The OmniLabel ground truth restricted to the (image, description) pairs that were run.

    Used to score a partial run (``--limit``): label spaces, boxes and images outside ``pairs`` are
    dropped, so AP is that of the queries asked, not penalized for the ones not yet asked.
    """
    images = {image_id for image_id, _ in pairs}
    descriptions = []
    for descr in gt["descriptions"]:
        kept = [i for i in descr["image_ids"] if (i, descr["id"]) in pairs]
        if kept:
            descriptions.append({**descr, "image_ids": kept})
    annotations = []
    for ann in gt.get("annotations", []):
        ids = [d for d in ann["description_ids"] if (ann["image_id"], d) in pairs]
        if ids:
            annotations.append({**ann, "description_ids": ids})
    return {**gt, "images": [img for img in gt["images"] if img["id"] in images],
            "descriptions": descriptions, "annotations": annotations}


def load_task(spec: TaskSpec) -> Task:
    """The :class:`Task` for ``spec``; raises :class:`InputError` for unknown datasets or bad options."""
    if spec.dataset == "reasonseg":
        return ReasonSegTask(spec)
    if spec.dataset == "refcoco":
        variant = spec.options.get("variant")
        if variant not in SCHEMES_BY_DATASET:
            raise InputError(f"RefCOCO variant must be one of {', '.join(SCHEMES_BY_DATASET)}, got {variant!r}")
        return RefCocoTask(spec)
    if spec.dataset == "omnilabel":
        return OmniLabelTask(spec)
    if spec.dataset in ("saco", "saco_video"):
        from eval.saco.task import load_saco_task  # imports this module

        return load_saco_task(spec)
    raise InputError(f"unknown dataset {spec.dataset!r}; expected one of {', '.join(DATASETS)}")
