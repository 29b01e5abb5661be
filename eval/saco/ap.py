"""COCO mask AP over SA-Co image-phrase pairs, with pycocotools doing the matching and the averaging.

Each image-phrase pair is one COCO "image" with one category (the phrase), so categories are not
used (``useCats = 0``): predictions of a negative pair are false positives. Every prediction counts
(no score threshold; the ranking is what AP measures), at most 100 per pair (COCO's ``maxDets``),
crowd ground truth is COCO's ignore region, one area range (all sizes). Reported: ``AP`` (mean over
IoU 0.50:0.95), ``AP50`` and ``AP75``, fractions in ``[0, 1]``; -1 when no pair has ground truth.
With several annotations (SA-Co/Gold) AP is against the first one: the official evaluator has no
oracle AP either. Only the scored (instance-exhaustive) pairs take part.

:func:`pair_ap_stats` runs pycocotools' per-image matching for one pair and returns a small JSON-ready
dict (scores, matches and ignore flags per IoU threshold), stored with each sample;
:func:`summarize_ap` feeds those to pycocotools' ``accumulate`` (the ranking over all pairs). Score
ties between pairs are broken by pair order (pycocotools: image id order), the order of the dataset.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from sam3_core.errors import InputError

MAX_DETECTIONS = 100
_AREA_ALL = [0.0, 1e5**2]
_THRESHOLDS = 10  # COCO IoU thresholds 0.50:0.05:0.95


def _params(evaluator: COCOeval, image_ids: list[int]) -> None:
    p = evaluator.params
    p.imgIds, p.catIds, p.useCats = image_ids, [1], 0
    p.areaRng, p.areaRngLbl, p.maxDets = [list(_AREA_ALL)], ["all"], [1, 10, MAX_DETECTIONS]


def pair_ap_stats(gt_rles: Sequence[Mapping[str, Any]], gt_crowd: Sequence[bool],
                  pred_rles: Sequence[Mapping[str, Any]], scores: Sequence[float]) -> dict[str, Any] | None:
    """pycocotools' per-image evaluation of one pair (RLEs with ``str`` or ``bytes`` counts); None if both are empty.

    Returns ``{"scores": [D], "matched": [[D] x 10], "dt_ignore": [[D] x 10], "gt_ignore": [G]}``.
    """
    if not gt_rles and not pred_rles:
        return None
    if len(pred_rles) != len(scores):
        raise InputError(f"{len(pred_rles)} predicted masks but {len(scores)} scores")
    size = (gt_rles or pred_rles)[0]["size"]
    gt = COCO()
    gt.dataset = {"images": [{"id": 1, "height": int(size[0]), "width": int(size[1])}],
                  "categories": [{"id": 1, "name": "phrase"}],
                  "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "segmentation": _text(r),
                                   "area": 1.0, "iscrowd": int(bool(gt_crowd[i]) if gt_crowd else 0),
                                   "bbox": [0, 0, 1, 1]} for i, r in enumerate(gt_rles)]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt.createIndex()
        dt = gt.loadRes([{"image_id": 1, "category_id": 1, "segmentation": _text(r), "score": float(s)}
                         for r, s in zip(pred_rles, scores, strict=True)]) if pred_rles else COCO()
        evaluator = COCOeval(gt, dt, iouType="segm")
        _params(evaluator, [1])
        evaluator.evaluate()
    result = evaluator.evalImgs[0]
    if result is None:
        return None
    return {"scores": [float(s) for s in result["dtScores"]],
            "matched": (np.asarray(result["dtMatches"]) > 0).astype(int).tolist(),
            "dt_ignore": np.asarray(result["dtIgnore"]).astype(int).tolist(),
            "gt_ignore": np.asarray(result["gtIgnore"]).astype(int).tolist()}


def _text(rle: Mapping[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]], "counts": counts.decode() if isinstance(counts, bytes) else counts}


def _eval_image(stats: Mapping[str, Any]) -> dict[str, Any]:
    try:
        scores = np.asarray(stats["scores"], dtype=np.float64)
        matched = np.asarray(stats["matched"], dtype=np.float64).reshape(_THRESHOLDS, len(scores))
        ignore = np.asarray(stats["dt_ignore"], dtype=bool).reshape(_THRESHOLDS, len(scores))
        gt_ignore = np.asarray(stats["gt_ignore"], dtype=bool).reshape(-1)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"malformed SA-Co AP stats: {str(stats)[:120]}") from exc
    return {"dtScores": scores, "dtMatches": matched, "dtIgnore": ignore, "gtIgnore": gt_ignore}


def summarize_ap(per_pair: Sequence[Mapping[str, Any] | None]) -> dict[str, float]:
    """``AP``, ``AP50``, ``AP75`` from :func:`pair_ap_stats` results in pair order (None entries: empty pairs)."""
    evaluator = COCOeval(iouType="segm")
    _params(evaluator, list(range(len(per_pair))))
    evaluator.evalImgs = [None if s is None else _eval_image(s) for s in per_pair]
    evaluator._paramsEval = copy.deepcopy(evaluator.params)
    if not any(e is not None for e in evaluator.evalImgs):
        return {"AP": -1.0, "AP50": -1.0, "AP75": -1.0}
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, 0, 0, -1]  # (IoU thresholds, recall points) at 100 detections
    thresholds = evaluator.params.iouThrs

    def mean(values: np.ndarray) -> float:
        valid = values[values > -1]
        return float(valid.mean()) if valid.size else -1.0

    return {"AP": mean(precision), "AP50": mean(precision[np.isclose(thresholds, 0.5)]),
            "AP75": mean(precision[np.isclose(thresholds, 0.75)])}
