"""Prediction files in the formats SAM 3's official SA-Co evaluators read, one per subset.

* Images (COCO results): a list of ``{"image_id": <pair id>, "category_id": 1, "segmentation": RLE,
  "bbox": [x, y, w, h], "score": s}``, the pair id being the ground truth's ``images[].id``. Feed it
  to the official cgF1 evaluator with that subset's ground-truth file(s).
* Video (YouTube-VIS results): a list of ``{"video_id", "category_id", "score", "segmentations":
  [RLE or null per frame], "bboxes": [[x, y, w, h] or null], "areas": [pixels or null]}``.

``eval score`` writes them into the run folder as ``saco_predictions_<subset>.json`` and
``saco_veval_predictions_<subset>.json`` (:func:`write_predictions`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pycocotools import mask as mask_utils

from eval.records import write_json
from eval.tasks import EvalItem


def _box_and_area(rle: Mapping[str, Any]) -> tuple[list[float], int]:
    coded = {"size": list(rle["size"]), "counts": rle["counts"].encode() if isinstance(rle["counts"], str)
             else rle["counts"]}
    return [float(v) for v in mask_utils.toBbox(coded)], int(mask_utils.area(coded))


def image_results(item: EvalItem, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """COCO result entries of one SA-Co image sample (its stored masks and scores)."""
    out = []
    for rle, score in zip(record.get("masks", []), record.get("scores", []), strict=True):
        box, _ = _box_and_area(rle)
        out.append({"image_id": item.sample.pair_id, "category_id": 1, "segmentation": dict(rle), "bbox": box,
                    "score": float(score)})
    return out


def video_results(item: EvalItem, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """YouTube-VIS result entries (one per masklet) of one SA-Co/VEval sample."""
    out = []
    for masklet in record.get("masklets", []):
        boxes, areas = [], []
        for frame in masklet["frames"]:
            box, area = _box_and_area(frame) if frame else (None, None)
            boxes.append(box)
            areas.append(area)
        out.append({"video_id": item.sample.video_id, "category_id": item.sample.category_id,
                    "score": float(masklet["score"]), "segmentations": list(masklet["frames"]), "bboxes": boxes,
                    "areas": areas})
    return out


def write_predictions(run_dir: str | Path, video: bool,
                      scored: Sequence[tuple[EvalItem, Mapping[str, Any]]]) -> list[Path]:
    """Write one prediction file per subset from ``(item, record)`` pairs; returns the paths written."""
    by_subset: dict[str, list[dict[str, Any]]] = {}
    for item, record in scored:
        entries = video_results(item, record) if video else image_results(item, record)
        by_subset.setdefault(item.groups[0], []).extend(entries)
    prefix = "saco_veval_predictions" if video else "saco_predictions"
    paths = []
    for subset, entries in sorted(by_subset.items()):
        path = Path(run_dir) / f"{prefix}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', subset)}.json"
        write_json(path, entries, compact=True)
        paths.append(path)
    return paths
