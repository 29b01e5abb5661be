"""SA-Co image metrics: classification-gated F1 (cgF1) and its parts, as SAM 3's official evaluator defines them.

SA-Co scores *image-phrase pairs*: each pair is one image with one noun phrase, and its ground truth
is every instance of the phrase in the image (a **negative** pair has none). A model answers a pair
with masks and scores; only predictions scoring ``>= 0.5`` (:data:`SCORE_THRESHOLD`) count.

Per pair (:func:`pair_counts`):

* ground-truth masks flagged *crowd* are left out (pycocotools marks them ``ignore``);
* if both the ground truth and the kept predictions are empty the pair is an image-level true
  negative and has no localization counts;
* otherwise predictions and ground truth are matched one-to-one by the Hungarian algorithm on mask
  IoU (the assignment maximizing the total IoU, computed once), and at each IoU threshold ``t`` of
  ``0.50:0.05:0.95`` a matched pair with ``IoU >= t`` is a TP; ``FP = #pred - TP``, ``FN = #gt - TP``.
  Predictions are kept in the order given (not sorted by score), so IoU ties resolve as in the
  official code (same matrix, same ``scipy.optimize.linear_sum_assignment``).

Over a set of pairs (:func:`summarize_counts`), at each threshold, with ``e = 1e-4``:

* ``precision = TP / (TP + FP + e)`` and ``recall = TP / (TP + FN + e)`` summed over every pair,
  ``F1 = 2PR / (P + R + e)``;
* **positive-micro** precision uses only the FPs of pairs with ground truth *and* predictions (the FPs
  of negative pairs are left to IL_MCC); **pmF1** (``positive_micro_F1``) is the F1 of that precision
  and the recall above;
* ``positive_macro_F1`` is the mean over pairs with ground truth and predictions of the pair's own F1
  (same epsilons), -1 when there is no such pair (the official summary prints -1 for an undefined value);
* image level: a pair is IL-positive when it has ground truth, predicted positive when it has a kept
  prediction; with ``d = 1e-6``: ``IL_precision``, ``IL_recall``, ``IL_F1``, ``IL_FPR`` and
  ``IL_MCC = (TP*TN - FP*FN) / (sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) + d)``;
* **cgF1** ``= pmF1 x IL_MCC`` per threshold.

Threshold-wise values are reported averaged over the ten thresholds (``cgF1``, ``positive_micro_F1``,
...) and at 0.5 and 0.75 (``cgF1@0.5``, ...). All values are fractions in ``[0, 1]`` (IL_MCC in
``[-1, 1]``) as the official code returns them; the paper's tables show ``100 x cgF1`` and
``100 x pmF1``.

**Oracle ground truth** (SA-Co/Gold has three annotators per pair): a pair is scored against each
annotation and the most favourable is kept (:func:`select_oracle`): an image-level true negative
wins; otherwise the higher mean F1 over thresholds, the first annotation on ties. Pairs not
*instance-exhaustive* in every annotation are not scored.

Use :func:`cgf1_from_masks` for lists of masks; the eval runner stores :class:`PairCounts` per sample
(:meth:`PairCounts.to_dict`) and sums them up with :func:`summarize_counts`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
from pycocotools import mask as mask_utils

from sam3_core.errors import InputError
from sam3_core.mask_encoding import rle_to_coco

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
"""``0.50, 0.55, ..., 0.95``, computed exactly as pycocotools does (the same floats, so ties agree)."""
SCORE_THRESHOLD = 0.5
"""Predictions scoring at least this are answers; lower ones are dropped before matching."""
F1_EPS = 1e-4
IL_EPS = 1e-6
#: A mask argument: ``(N, H, W)`` boolean array, or N COCO RLE dicts (compressed or uncompressed counts).
MaskInput = Union[np.ndarray, Sequence[Mapping[str, Any]]]  # noqa: UP007 (a runtime alias)


@dataclass(frozen=True)
class ImagePhraseGT:
    """Ground truth of one image-phrase pair.

    Attributes:
        pair_id: unique id of the pair (the official files' ``images[].id``).
        masks: every instance of the phrase, ``(N, H, W)`` bool or N RLE dicts; none for a negative pair.
        crowd: per mask, True for a crowd segment (left out of matching); empty means no crowd masks.
        exhaustive: False when the pair is not instance-exhaustive (then it is not scored).
    """

    pair_id: str | int
    masks: MaskInput
    crowd: Sequence[bool] = ()
    exhaustive: bool = True


@dataclass(frozen=True)
class ImagePhrasePred:
    """A model's answer for one image-phrase pair: masks (``(K, H, W)`` bool or K RLE dicts), one score each."""

    pair_id: str | int
    masks: MaskInput
    scores: Sequence[float]


@dataclass(frozen=True)
class PairCounts:
    """Localization counts of one pair: ground-truth and kept-prediction numbers, TPs per IoU threshold.

    ``tp`` is empty for an image-level true negative (no ground truth, no kept prediction).
    """

    num_gt: int
    num_pred: int
    tp: tuple[int, ...]

    @property
    def true_negative(self) -> bool:
        return self.num_gt == 0 and self.num_pred == 0

    def local_f1(self) -> np.ndarray:
        """The pair's own F1 per threshold (official epsilons); zeros without predictions."""
        tp = np.asarray(self.tp, dtype=np.float64)
        precision = tp / (self.num_pred + F1_EPS)  # TP + FP = number of kept predictions
        recall = tp / (self.num_gt + F1_EPS)
        return 2 * precision * recall / (precision + recall + F1_EPS)

    def to_dict(self) -> dict[str, Any]:
        return {"num_gt": self.num_gt, "num_pred": self.num_pred, "tp": list(self.tp)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PairCounts:
        """Inverse of :meth:`to_dict`; raises :class:`InputError` on malformed data."""
        try:
            counts = cls(int(data["num_gt"]), int(data["num_pred"]), tuple(int(v) for v in data["tp"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed SA-Co pair counts: {data!r}") from exc
        if counts.tp and (len(counts.tp) != len(IOU_THRESHOLDS)
                          or not all(0 <= t <= min(counts.num_gt, counts.num_pred) for t in counts.tp)):
            raise InputError(f"inconsistent SA-Co pair counts: {data!r}")
        return counts


def to_rles(masks: MaskInput) -> list[dict[str, Any]]:
    """pycocotools RLEs (bytes counts) of ``(N, H, W)`` masks or of RLE dicts."""
    if isinstance(masks, np.ndarray):
        if masks.ndim != 3:
            raise InputError(f"masks must be (N, H, W), got shape {masks.shape}")
        if masks.shape[0] == 0:
            return []
        return list(mask_utils.encode(np.asfortranarray(masks.astype(np.uint8).transpose(1, 2, 0))))
    return [rle_to_coco(rle) for rle in masks]


def mask_ious(pred: Sequence[dict[str, Any]], gt: Sequence[dict[str, Any]]) -> np.ndarray:
    """``(K, N)`` IoU of prediction RLEs with (non-crowd) ground-truth RLEs."""
    if not pred or not gt:
        return np.zeros((len(pred), len(gt)))
    sizes = {tuple(r["size"]) for r in [*pred, *gt]}
    if len(sizes) != 1:
        raise InputError(f"masks of one pair have different sizes: {sorted(sizes)}")
    return np.asarray(mask_utils.iou(list(pred), list(gt), [0] * len(gt)), dtype=np.float64).reshape(len(pred), len(gt))


def counts_from_ious(ious: np.ndarray) -> PairCounts:
    """Counts from the ``(K, N)`` IoU matrix of the kept predictions and the non-crowd ground truth."""
    from scipy.optimize import linear_sum_assignment  # scipy loads slowly; only scoring needs it

    num_pred, num_gt = ious.shape
    if num_pred == 0 and num_gt == 0:
        return PairCounts(0, 0, ())
    if num_pred == 0 or num_gt == 0:
        return PairCounts(num_gt, num_pred, (0,) * len(IOU_THRESHOLDS))
    rows, cols = linear_sum_assignment(-ious)
    matched = ious[rows, cols]
    return PairCounts(num_gt, num_pred, tuple(int((matched >= t).sum()) for t in IOU_THRESHOLDS))


def pair_counts(gt_masks: MaskInput, pred_masks: MaskInput, pred_scores: Sequence[float],
                gt_crowd: Sequence[bool] = (), score_threshold: float = SCORE_THRESHOLD) -> PairCounts:
    """Counts of one pair (see the module docstring): crowd masks dropped, predictions below the threshold too."""
    gts, preds = to_rles(gt_masks), to_rles(pred_masks)
    if len(preds) != len(pred_scores):
        raise InputError(f"{len(preds)} predicted masks but {len(pred_scores)} scores")
    if gt_crowd and len(gt_crowd) != len(gts):
        raise InputError(f"{len(gts)} ground-truth masks but {len(gt_crowd)} crowd flags")
    kept_gt = [r for i, r in enumerate(gts) if not (gt_crowd and gt_crowd[i])]
    kept_pred = [r for r, s in zip(preds, pred_scores, strict=True) if float(s) >= score_threshold]
    return counts_from_ious(mask_ious(kept_pred, kept_gt))


def select_oracle(candidates: Sequence[PairCounts]) -> PairCounts:
    """The most favourable of one pair's counts against several annotations (see the module docstring)."""
    if not candidates:
        raise InputError("no ground truth to score the pair against")
    best = candidates[0]
    for current in candidates[1:]:
        if not best.true_negative and not current.true_negative:
            if current.local_f1().mean() > best.local_f1().mean():
                best = current
        elif current.true_negative:
            best = current  # both empty against this annotation: a perfect answer
    return best


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    return 2 * precision * recall / (precision + recall + F1_EPS)


def _threshold_metrics(counts: Sequence[PairCounts]) -> dict[str, np.ndarray]:
    size = len(IOU_THRESHOLDS)
    tp, fp, fn, positive_fp, local = (np.zeros(size) for _ in range(5))
    both = 0
    for c in counts:
        if c.true_negative:
            continue
        pair_tp = np.asarray(c.tp, dtype=np.float64)
        tp += pair_tp
        fp += c.num_pred - pair_tp
        fn += c.num_gt - pair_tp
        if c.num_gt > 0 and c.num_pred > 0:
            positive_fp += c.num_pred - pair_tp
            local += c.local_f1()
            both += 1
    precision, recall = tp / (tp + fp + F1_EPS), tp / (tp + fn + F1_EPS)
    pm_precision = tp / (tp + positive_fp + F1_EPS)
    return {"precision": precision, "recall": recall, "F1": _f1(precision, recall),
            "positive_micro_precision": pm_precision, "positive_micro_F1": _f1(pm_precision, recall),
            "positive_macro_F1": local / both if both else np.full(size, -1.0)}


def _image_level(counts: Sequence[PairCounts]) -> dict[str, float]:
    tp = sum(1 for c in counts if c.num_gt > 0 and c.num_pred > 0)
    fp = sum(1 for c in counts if c.num_gt == 0 and c.num_pred > 0)
    tn = sum(1 for c in counts if c.true_negative)
    fn = sum(1 for c in counts if c.num_gt > 0 and c.num_pred == 0)
    recall, precision = tp / (tp + fn + IL_EPS), tp / (tp + fp + IL_EPS)
    denominator = (float(tp + fp) * float(tp + fn) * float(tn + fp) * float(tn + fn)) ** 0.5 + IL_EPS
    return {"IL_precision": precision, "IL_recall": recall, "IL_F1": 2 * precision * recall / (precision + recall
            + IL_EPS), "IL_FPR": fp / (fp + tn + IL_EPS), "IL_MCC": float(tp * tn - fp * fn) / denominator,
            "IL_TP": tp, "IL_FP": fp, "IL_TN": tn, "IL_FN": fn}


def summarize_counts(counts: Sequence[PairCounts]) -> dict[str, Any]:
    """Every metric of the module docstring over ``counts`` (one per scored pair; empty gives ``{}``).

    Keys: ``cgF1``, ``positive_micro_F1`` (pmF1), ``positive_micro_precision``, ``positive_macro_F1``,
    ``precision``, ``recall``, ``F1`` (means over the IoU thresholds) and each ``@0.5`` / ``@0.75``;
    ``IL_MCC``, ``IL_precision``, ``IL_recall``, ``IL_F1``, ``IL_FPR``; counts ``pairs``,
    ``positive_pairs``, ``IL_TP``, ``IL_FP``, ``IL_TN``, ``IL_FN``.
    """
    if not counts:
        return {}
    per_threshold = _threshold_metrics(counts)
    image = _image_level(counts)
    per_threshold["cgF1"] = per_threshold["positive_micro_F1"] * image["IL_MCC"]
    at = {0.5: int(np.argmin(np.abs(IOU_THRESHOLDS - 0.5))), 0.75: int(np.argmin(np.abs(IOU_THRESHOLDS - 0.75)))}
    out: dict[str, Any] = {}
    for name in ("cgF1", "positive_micro_F1", "positive_micro_precision", "positive_macro_F1", "precision",
                 "recall", "F1"):
        values = per_threshold[name]
        valid = values[values > -1]  # the official summary's rule: undefined (-1, NaN) values are left out
        out[name] = float(valid.mean()) if valid.size else -1.0
        for threshold, index in at.items():
            value = values[index]
            out[f"{name}@{threshold}"] = float(value) if value > -1 else -1.0
    out.update({k: v for k, v in image.items()})
    out["pairs"] = len(counts)
    out["positive_pairs"] = sum(1 for c in counts if c.num_gt > 0)
    return out


def by_pair_id(items: Sequence[Any], what: str) -> dict[str | int, Any]:
    """``{pair_id: item}``; a pair id given twice is an :class:`InputError` naming ``what``."""
    out: dict[str | int, Any] = {}
    for item in items:
        if item.pair_id in out:
            raise InputError(f"{what}: pair id {item.pair_id!r} appears twice")
        out[item.pair_id] = item
    return out


def cgf1_from_masks(gt: Sequence[ImagePhraseGT], pred: Sequence[ImagePhrasePred], *,
                    oracle_gts: Sequence[Sequence[ImagePhraseGT]] = (),
                    score_threshold: float = SCORE_THRESHOLD) -> dict[str, Any]:
    """cgF1, IL_MCC, pmF1 and the rest (:func:`summarize_counts`) of predictions against ground truth.

    Args:
        gt: one entry per image-phrase pair (negative pairs have no masks); pairs that are not
            exhaustive (here or in any ``oracle_gts``) are left out.
        pred: answers by pair id; a pair without an entry has an empty answer. Every score is
            compared with ``score_threshold``.
        oracle_gts: further annotations of the same pairs (SA-Co/Gold's second and third annotator);
            each pair keeps its most favourable score (see :func:`select_oracle`).

    Raises:
        InputError: duplicate pair ids, a prediction for an unknown pair, mismatched sizes or lengths.
    """
    annotations = [by_pair_id(gt, "ground truth")] + [by_pair_id(g, "oracle ground truth") for g in oracle_gts]
    answers = by_pair_id(pred, "predictions")
    unknown = set(answers) - set(annotations[0])
    if unknown:
        raise InputError(f"predictions for pairs not in the ground truth: {sorted(map(str, unknown))[:5]}")
    counts = []
    for pair_id, first in annotations[0].items():
        versions = [first] + [a.get(pair_id) for a in annotations[1:]]
        if any(v is None for v in versions):
            raise InputError(f"pair {pair_id!r} is missing from an oracle ground truth")
        if not all(v.exhaustive for v in versions):
            continue
        answer = answers.get(pair_id)
        masks, scores = (answer.masks, answer.scores) if answer else ([], [])
        counts.append(select_oracle([pair_counts(v.masks, masks, scores, v.crowd, score_threshold)
                                     for v in versions]))
    return summarize_counts(counts)
