"""OmniLabel box AP, computed the way the official toolkit (``omnilabeltools.OmniLabelEval``) does.

The toolkit reuses pycocotools' COCOeval with *descriptions* in place of categories:

1. Every (image, description) pair of the image's **label space** is matched on its own: ground
   truth = boxes whose ``description_ids`` contain the description; detections = predicted boxes
   listing it, each with its own score. Detections are sorted by score (stable) and cut to the 100
   best; greedy COCO matching at IoU 0.50:0.05:0.95 (crowd boxes are "ignore" regions). Pairs with
   neither ground truth nor detections are skipped, so detections for a description that has no box
   in that image are all false positives. Predictions for descriptions outside the label space, or
   for images not in the ground truth, are not evaluated.
2. For each **group**, all matching pairs (images in id order, descriptions in file order) are
   pooled into one score-ranked list -- there is no per-description averaging -- and precision is
   read at 101 recall points after making it monotone (COCO interpolation). AP = mean over the 10
   IoU thresholds x 101 recall points; -1 when the group has no ground-truth box.
3. Groups: ``categ`` (category names), ``descr`` (free-form descriptions), ``descr-pos`` (only
   descriptions that refer to at least one box *in that image*), ``descr-S`` / ``descr-M`` /
   ``descr-L`` (descriptions of <=3, 4-8 and >=9 words, ``len(text.split())``).
4. Headline: harmonic mean ``2*a*b / (a + b + 1e-5)`` of AP-descr and AP-categ (-1 unless both
   groups have ground truth).

Where the toolkit marks a match by storing the matched box id (so an annotation with id 0 would read
as unmatched), this module keeps explicit flags; results are otherwise identical.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from eval.datasets.omnilabel import OmniLabelData, parse_omnilabel
from sam3_core.errors import InputError

logger = logging.getLogger(__name__)

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = 100
AREA_RANGE = (0.0, 1e5**2)  # COCO's "all" area range
HM_EPS = 1e-5
_IOU50_INDEX = int(np.argmin(np.abs(IOU_THRESHOLDS - 0.5)))
_IOU75_INDEX = int(np.argmin(np.abs(IOU_THRESHOLDS - 0.75)))
_MAX_WORDS = 10**5

Bbox = tuple[float, float, float, float]


@dataclass(frozen=True)
class GroupSpec:
    """Which (image, description) pairs a group pools: description types and word-count range."""

    types: frozenset[str]
    min_words: int = 0
    max_words: int = _MAX_WORDS


# Types per (image, description): "C" category, "Dp" description with a box in the image, "Dn" without.
GROUPS: dict[str, GroupSpec] = {
    "categ": GroupSpec(frozenset({"C"})),
    "descr": GroupSpec(frozenset({"Dp", "Dn"})),
    "descr-pos": GroupSpec(frozenset({"Dp"})),
    "descr-S": GroupSpec(frozenset({"Dp", "Dn"}), 0, 3),
    "descr-M": GroupSpec(frozenset({"Dp", "Dn"}), 4, 8),
    "descr-L": GroupSpec(frozenset({"Dp", "Dn"}), 9, _MAX_WORDS),
}


@dataclass(frozen=True)
class OmniLabelResult:
    """AP (IoU .50:.95), AP50, AP75 and AR per group, ground-truth counts, and the headline metric.

    A value of -1 means "not defined" (no ground truth in that group), as in the toolkit.
    """

    hm: float
    ap: dict[str, float]
    ap50: dict[str, float]
    ap75: dict[str, float]
    ar: dict[str, float]
    num_gt: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        """Flat JSON-ready view: ``{"AP": hm, "AP-descr": ..., "AP50-categ": ..., ...}``."""
        out: dict[str, Any] = {"AP": self.hm}
        for prefix, table in (("AP", self.ap), ("AP50", self.ap50), ("AP75", self.ap75), ("AR", self.ar)):
            out.update({f"{prefix}-{name}": value for name, value in table.items()})
        out.update({f"num-gt-{name}": value for name, value in self.num_gt.items()})
        return out


@dataclass(frozen=True)
class _PairEval:
    """Matching result of one (image, description): detections in score order, T x D flags."""

    scores: np.ndarray
    matched: np.ndarray
    ignored: np.ndarray
    num_gt: int


def harmonic_mean(ap_descr: float, ap_categ: float) -> float:
    """The toolkit's headline: ``2ab / (a + b + 1e-5)``."""
    return (2 * ap_descr * ap_categ) / (ap_descr + ap_categ + HM_EPS)


def _area(bbox: Sequence[float]) -> float:
    return max(0.0, float(bbox[2]) * float(bbox[3]))


def _outside_area(bbox: Sequence[float]) -> bool:
    area = _area(bbox)
    return area < AREA_RANGE[0] or area > AREA_RANGE[1]


def _parse_prediction(pred: Any, index: int) -> tuple[int, list[float], list[Any], list[float]]:
    where = f"prediction {index}"
    if not isinstance(pred, Mapping):
        raise InputError(f"{where}: expected an object, got {type(pred).__name__}")
    try:
        image_id, bbox = pred["image_id"], pred["bbox"]
        descr_ids, scores = list(pred["description_ids"]), [float(s) for s in pred["scores"]]
    except KeyError as exc:
        raise InputError(f"{where}: missing field {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: 'description_ids' and 'scores' must be lists of ids / numbers") from exc
    if len(descr_ids) != len(scores):
        raise InputError(f"{where}: {len(descr_ids)} description_ids but {len(scores)} scores")
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise InputError(f"{where}: 'bbox' must be [x, y, w, h], got {bbox!r}")
    return image_id, [float(v) for v in bbox], descr_ids, scores


def _group_predictions(
    predictions: Sequence[Any], image_ids: set[int]
) -> dict[tuple[Any, Any], list[tuple[list[float], float]]]:
    """``(image_id, description_id) -> [(bbox, score), ...]`` in prediction order."""
    out: dict[tuple[Any, Any], list[tuple[list[float], float]]] = {}
    dropped = 0
    for index, pred in enumerate(predictions):
        image_id, bbox, descr_ids, scores = _parse_prediction(pred, index)
        if image_id not in image_ids:
            dropped += 1
            continue
        for descr_id, score in zip(descr_ids, scores, strict=True):
            out.setdefault((image_id, descr_id), []).append((bbox, score))
    if dropped:
        logger.warning("%d predictions name images that are not in the ground truth; ignored", dropped)
    return out


def _greedy_match(ious: np.ndarray, gt_ignore: np.ndarray, crowd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO matching of score-sorted detections to ignore-last ground truth, per IoU threshold."""
    num_dt, num_gt = ious.shape
    matched = np.zeros((len(IOU_THRESHOLDS), num_dt), dtype=bool)
    dt_ignore = np.zeros((len(IOU_THRESHOLDS), num_dt), dtype=bool)
    reachable = ious.max(axis=1)  # a detection below the threshold with every box cannot match
    for t, threshold in enumerate(IOU_THRESHOLDS):
        gt_taken = np.zeros(num_gt, dtype=bool)
        for d in range(num_dt):
            best, m = min(threshold, 1 - 1e-10), -1
            if reachable[d] < best:
                continue
            for g in range(num_gt):
                if gt_taken[g] and not crowd[g]:
                    continue
                if m > -1 and not gt_ignore[m] and gt_ignore[g]:
                    break  # ignore boxes come last; a real match beats them
                if ious[d, g] < best:
                    continue
                best, m = ious[d, g], g
            if m > -1:
                matched[t, d], dt_ignore[t, d], gt_taken[m] = True, gt_ignore[m], True
    return matched, dt_ignore


def _evaluate_pair(
    gts: list[tuple[Bbox, bool]], dts: list[tuple[list[float], float]], max_dets: int
) -> _PairEval | None:
    """Match one (image, description); ``None`` when it has neither ground truth nor detections."""
    if not gts and not dts:
        return None
    gt_ignore_raw = [crowd or _outside_area(box) for box, crowd in gts]
    gt_order = np.argsort(np.array(gt_ignore_raw, dtype=np.int64), kind="mergesort")
    gt_boxes = [list(gts[i][0]) for i in gt_order]
    crowd = np.array([gts[i][1] for i in gt_order], dtype=bool)
    gt_ignore = np.array([gt_ignore_raw[i] for i in gt_order], dtype=bool)
    dt_order = np.argsort([-score for _, score in dts], kind="mergesort")[:max_dets]
    dt_boxes = [dts[i][0] for i in dt_order]
    scores = np.array([dts[i][1] for i in dt_order], dtype=np.float64)
    if dt_boxes and gt_boxes:
        ious = np.asarray(mask_utils.iou(dt_boxes, gt_boxes, [int(c) for c in crowd]), dtype=np.float64)
        matched, dt_ignore = _greedy_match(ious, gt_ignore, crowd)
    else:
        matched = np.zeros((len(IOU_THRESHOLDS), len(dt_boxes)), dtype=bool)
        dt_ignore = np.zeros_like(matched)
    outside = np.array([_outside_area(b) for b in dt_boxes], dtype=bool)
    dt_ignore |= ~matched & outside[None, :]
    return _PairEval(scores=scores, matched=matched, ignored=dt_ignore, num_gt=int((~gt_ignore).sum()))


def _precision_recall(pairs: list[_PairEval], max_dets: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Interpolated precision ``[T, R]`` and final recall ``[T]`` of the pooled pairs, and the gt count.

    Precision is ``-1`` everywhere when there is no (non-ignored) ground truth.
    """
    num_t, num_r = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)
    num_gt = sum(p.num_gt for p in pairs)
    precision, recall = -np.ones((num_t, num_r)), -np.ones(num_t)
    if num_gt == 0:
        return precision, recall, num_gt
    scores = np.concatenate([p.scores[:max_dets] for p in pairs])
    order = np.argsort(-scores, kind="mergesort")
    matched = np.concatenate([p.matched[:, :max_dets] for p in pairs], axis=1)[:, order]
    ignored = np.concatenate([p.ignored[:, :max_dets] for p in pairs], axis=1)[:, order]
    tp_sum = np.cumsum(matched & ~ignored, axis=1).astype(float)
    fp_sum = np.cumsum(~matched & ~ignored, axis=1).astype(float)
    for t in range(num_t):
        tp, fp = tp_sum[t], fp_sum[t]
        count = len(tp)
        rc = tp / num_gt
        pr = tp / (fp + tp + np.spacing(1))
        recall[t] = rc[-1] if count else 0.0
        envelope = np.maximum.accumulate(pr[::-1])[::-1]  # precision made non-increasing in recall
        idx = np.searchsorted(rc, RECALL_THRESHOLDS, side="left")
        reached = idx < count  # recall levels beyond the last detection keep precision 0
        precision[t] = 0.0
        precision[t, reached] = envelope[idx[reached]]
    return precision, recall, num_gt


def _mean_defined(values: np.ndarray) -> float:
    kept = values[values > -1]
    return float(np.mean(kept)) if kept.size else -1.0


def _pair_types(data: OmniLabelData) -> dict[tuple[int, int], str]:
    """``(image_id, description_id) -> "C" | "Dp" | "Dn"`` over every label space."""
    positives: dict[int, set[int]] = {}
    for box in data.boxes:
        positives.setdefault(box.image_id, set()).update(box.description_ids)
    types = {}
    for image_id, space in data.labelspace.items():
        for descr_id in space:
            if data.descriptions[descr_id].is_category:
                types[(image_id, descr_id)] = "C"
            else:
                types[(image_id, descr_id)] = "Dp" if descr_id in positives.get(image_id, set()) else "Dn"
    return types


def _match_all(data: OmniLabelData, predictions: Sequence[Any], max_dets: int) -> list[tuple[int, int, _PairEval]]:
    gt_by_pair: dict[tuple[int, int], list[tuple[Bbox, bool]]] = {}
    for box in data.boxes:
        for descr_id in box.description_ids:
            gt_by_pair.setdefault((box.image_id, descr_id), []).append((box.bbox, box.iscrowd))
    dt_by_pair = _group_predictions(predictions, set(data.image_files))
    results = []
    for image_id in sorted(data.image_files):
        for descr_id in data.labelspace[image_id]:
            key = (image_id, descr_id)
            pair = _evaluate_pair(gt_by_pair.get(key, []), dt_by_pair.get(key, []), max_dets)
            if pair is not None:
                results.append((image_id, descr_id, pair))
    return results


def evaluate_omnilabel(
    gt: Mapping[str, Any], predictions: Sequence[Mapping[str, Any]], max_dets: int = MAX_DETS
) -> OmniLabelResult:
    """Score predictions against an OmniLabel ground-truth dict (neither is modified).

    ``predictions`` use the toolkit's result format: ``{"image_id", "bbox": [x, y, w, h],
    "description_ids": [...], "scores": [...]}`` with one score per description id.
    """
    data = parse_omnilabel(gt)
    if not data.has_boxes:
        raise InputError("the ground truth has no 'annotations' (a test split?); cannot compute AP")
    types = _pair_types(data)
    matched = _match_all(data, predictions, max_dets)
    tables: dict[str, dict[str, Any]] = {k: {} for k in ("ap", "ap50", "ap75", "ar", "num_gt")}
    for name, spec in GROUPS.items():
        pairs = [
            pair
            for image_id, descr_id, pair in matched
            if types[(image_id, descr_id)] in spec.types
            and spec.min_words <= data.descriptions[descr_id].num_words <= spec.max_words
        ]
        precision, recall, num_gt = _precision_recall(pairs, max_dets)
        tables["ap"][name] = _mean_defined(precision)
        tables["ap50"][name] = _mean_defined(precision[_IOU50_INDEX])
        tables["ap75"][name] = _mean_defined(precision[_IOU75_INDEX])
        tables["ar"][name] = _mean_defined(recall)
        tables["num_gt"][name] = num_gt if pairs else -1
    both = tables["num_gt"]["descr"] > 0 and tables["num_gt"]["categ"] > 0
    hm = harmonic_mean(tables["ap"]["descr"], tables["ap"]["categ"]) if both else -1.0
    return OmniLabelResult(hm=hm, **tables)
