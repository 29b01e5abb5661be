"""SA-Co/VEval metrics over masklets: video cgF1 and phrase HOTA (pHOTA), as the official evaluators define them.

A video-phrase pair is one video with one noun phrase; its ground truth is every object of the phrase
as a :class:`Masklet` (one RLE or None per frame); a model answers with masklets and one score each.

**Video cgF1** is the image cgF1 of :mod:`eval.saco.metrics` with pairs = video-phrase pairs and the
IoU of two masklets taken over the whole video (:func:`masklet_iou`): the summed per-frame
intersections over the summed per-frame unions, where a frame with only one of the two adds that
one's area to the union; two masklets absent from every frame have IoU 1. Predictions scoring
``>= 0.5`` count; crowd ground truth is left out; Hungarian matching on masklet IoU.

**pHOTA** is HOTA (Luiten et al., 2020; TrackEval's implementation) with each video-phrase pair as its
own sequence and a single class. Predictions scoring ``> 0.5`` (strictly, as the official phrase HOTA
evaluator filters them) count, their frames with an empty mask are treated as absent, and crowd flags
are not used. Per sequence and localization threshold ``alpha`` in ``0.05:0.05:0.95``, frames are
matched by the Hungarian algorithm on ``global alignment x IoU`` (:func:`hota_sequence`). Sequences
combine by summing TP / FN / FP and the TP-weighted association and localization sums
(:func:`summarize_hota`); ``HOTA = sqrt(DetA x AssA)`` per alpha, reported as the mean over the 19
alphas (``pHOTA``), with ``DetA``, ``AssA``, ``DetRe``, ``DetPr``, ``AssRe``, ``AssPr``, ``LocA``
and ``OWTA`` likewise. A pair with neither ground truth nor kept predictions adds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from eval.saco.metrics import SCORE_THRESHOLD, PairCounts, counts_from_ious, summarize_counts, to_rles
from sam3_core.errors import InputError

ALPHAS = np.arange(0.05, 0.99, 0.05)
"""HOTA's localization thresholds, computed as TrackEval does (19 values)."""
_FLOAT_EPS = np.finfo("float").eps
_HOTA_SUMS = ("tp", "fn", "fp", "loc", "ass_a", "ass_re", "ass_pr")


@dataclass(frozen=True)
class Masklet:
    """One object through a video: per frame a COCO RLE dict (compressed or not) or None when absent.

    ``score`` is the model's confidence (ground truth: unused); ``crowd`` marks a ground-truth
    segment covering several objects (left out of cgF1 matching).
    """

    frames: Sequence[Mapping[str, Any] | None]
    score: float = 1.0
    crowd: bool = False


@dataclass(frozen=True)
class VideoPhraseGT:
    """Ground truth of one video-phrase pair (no masklets: a negative pair)."""

    pair_id: str | int
    masklets: Sequence[Masklet] = ()


@dataclass(frozen=True)
class VideoPhrasePred:
    """A model's masklets for one video-phrase pair."""

    pair_id: str | int
    masklets: Sequence[Masklet] = ()


def _frame_rles(masklet: Masklet) -> list[dict[str, Any] | None]:
    """The masklet's frames as pycocotools RLEs; empty masks become None (absent)."""
    out: list[dict[str, Any] | None] = []
    for frame in masklet.frames:
        if not frame:
            out.append(None)
            continue
        (rle,) = to_rles([frame])
        out.append(rle if mask_utils.area(rle) > 0 else None)
    return out


def masklet_iou(pred: Sequence[dict[str, Any] | None], gt: Sequence[dict[str, Any] | None]) -> float:
    """Spatio-temporal IoU of two masklets given as per-frame RLEs (None: absent); 1 when both are empty."""
    if len(pred) != len(gt):
        raise InputError(f"masklets of one video differ in length: {len(pred)} and {len(gt)} frames")
    inter = union = 0.0
    for p, g in zip(pred, gt, strict=True):
        if p is not None and g is not None:
            inter += float(mask_utils.area(mask_utils.merge([p, g], intersect=True)))
            union += float(mask_utils.area(mask_utils.merge([p, g], intersect=False)))
        elif p is not None or g is not None:
            union += float(mask_utils.area(p if p is not None else g))
    return inter / union if union > 0 else 1.0


def video_pair_counts(gt: Sequence[Masklet], pred: Sequence[Masklet],
                      score_threshold: float = SCORE_THRESHOLD) -> PairCounts:
    """cgF1 counts of one video-phrase pair (crowd ground truth and predictions below the threshold left out)."""
    gts = [_frame_rles(m) for m in gt if not m.crowd]
    preds = [_frame_rles(m) for m in pred if float(m.score) >= score_threshold]
    ious = np.array([[masklet_iou(p, g) for g in gts] for p in preds], dtype=np.float64).reshape(len(preds), len(gts))
    return counts_from_ious(ious)


@dataclass
class HotaSums:
    """Per-alpha sums of one or more sequences: TP, FN, FP, matched IoU (loc) and TP-weighted association terms."""

    tp: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    fn: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    fp: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    loc: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    ass_a: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    ass_re: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    ass_pr: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))

    def add(self, other: HotaSums) -> None:
        for name in _HOTA_SUMS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_dict(self) -> dict[str, list[float]]:
        return {name: [float(v) for v in getattr(self, name)] for name in _HOTA_SUMS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HotaSums:
        """Inverse of :meth:`to_dict`; raises :class:`InputError` on malformed data."""
        try:
            arrays = {name: np.asarray(data[name], dtype=np.float64) for name in _HOTA_SUMS}
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed HOTA sums: {str(data)[:120]}") from exc
        if any(a.shape != ALPHAS.shape for a in arrays.values()):
            raise InputError(f"HOTA sums must have {len(ALPHAS)} values each")
        return cls(**arrays)


def _frame_ids(tracks: Sequence[Sequence[dict[str, Any] | None]], frame: int) -> tuple[np.ndarray, list[dict]]:
    ids = [i for i, track in enumerate(tracks) if track[frame] is not None]
    return np.asarray(ids, dtype=int), [tracks[i][frame] for i in ids]


def _similarities(gt_tracks: list, pred_tracks: list, frames: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per frame: the present ground-truth ids, prediction ids and their ``(G, P)`` mask IoU."""
    out = []
    for t in range(frames):
        gt_ids, gt_dets = _frame_ids(gt_tracks, t)
        pred_ids, pred_dets = _frame_ids(pred_tracks, t)
        if gt_dets and pred_dets:
            sim = np.asarray(mask_utils.iou(gt_dets, pred_dets, [0] * len(pred_dets)), dtype=np.float64)
        else:
            sim = np.zeros((len(gt_dets), len(pred_dets)))
        out.append((gt_ids, pred_ids, sim.reshape(len(gt_dets), len(pred_dets))))
    return out


def hota_sequence(gt: Sequence[Masklet], pred: Sequence[Masklet], score_threshold: float = SCORE_THRESHOLD) -> HotaSums:
    """HOTA sums of one video-phrase pair (see the module docstring); predictions must score ``> score_threshold``."""
    from scipy.optimize import linear_sum_assignment

    gt_tracks = [_frame_rles(m) for m in gt]
    pred_tracks = [_frame_rles(m) for m in pred if float(m.score) > score_threshold]
    lengths = {len(t) for t in gt_tracks + pred_tracks}
    if len(lengths) > 1:
        raise InputError(f"masklets of one video differ in length: {sorted(lengths)} frames")
    frames = lengths.pop() if lengths else 0
    sums = HotaSums()
    per_frame = _similarities(gt_tracks, pred_tracks, frames)
    num_gt = sum(len(g) for g, _, _ in per_frame)
    num_pred = sum(len(p) for _, p, _ in per_frame)
    if num_pred == 0 or num_gt == 0:  # TrackEval's early exits: only misses or only false positives
        sums.fn += num_gt
        sums.fp += num_pred
        return sums
    potential = np.zeros((len(gt_tracks), len(pred_tracks)))
    gt_count = np.zeros((len(gt_tracks), 1))
    pred_count = np.zeros((1, len(pred_tracks)))
    for gt_ids, pred_ids, sim in per_frame:
        denominator = sim.sum(0)[np.newaxis, :] + sim.sum(1)[:, np.newaxis] - sim
        normalized = np.zeros_like(sim)
        positive = denominator > _FLOAT_EPS
        normalized[positive] = sim[positive] / denominator[positive]
        potential[gt_ids[:, np.newaxis], pred_ids[np.newaxis, :]] += normalized
        gt_count[gt_ids] += 1
        pred_count[0, pred_ids] += 1
    with np.errstate(divide="ignore", invalid="ignore"):  # ids never present have 0 / 0; never indexed below
        alignment = potential / (gt_count + pred_count - potential)
    matches = np.zeros((len(ALPHAS), len(gt_tracks), len(pred_tracks)))
    for gt_ids, pred_ids, sim in per_frame:
        if len(gt_ids) == 0 or len(pred_ids) == 0:
            sums.fp += len(pred_ids)
            sums.fn += len(gt_ids)
            continue
        rows, cols = linear_sum_assignment(-(alignment[gt_ids[:, np.newaxis], pred_ids[np.newaxis, :]] * sim))
        matched_sim = sim[rows, cols]
        for a, alpha in enumerate(ALPHAS):
            ok = matched_sim >= alpha - _FLOAT_EPS
            sums.tp[a] += ok.sum()
            sums.fn[a] += len(gt_ids) - ok.sum()
            sums.fp[a] += len(pred_ids) - ok.sum()
            sums.loc[a] += matched_sim[ok].sum()
            matches[a, gt_ids[rows[ok]], pred_ids[cols[ok]]] += 1
    for a in range(len(ALPHAS)):
        count = matches[a]
        sums.ass_a[a] = np.sum(count * count / np.maximum(1, gt_count + pred_count - count))
        sums.ass_re[a] = np.sum(count * count / np.maximum(1, gt_count))
        sums.ass_pr[a] = np.sum(count * count / np.maximum(1, pred_count))
    return sums


def summarize_hota(sequences: Sequence[HotaSums]) -> dict[str, Any]:
    """pHOTA and its parts (means over the alphas) combined over sequences; ``{}`` for none."""
    if not sequences:
        return {}
    total = HotaSums()
    for sums in sequences:
        total.add(sums)
    tp = total.tp
    det_re = tp / np.maximum(1, tp + total.fn)
    det_pr = tp / np.maximum(1, tp + total.fp)
    det_a = tp / np.maximum(1, tp + total.fn + total.fp)
    ass_a = total.ass_a / np.maximum(1.0, tp)
    ass_re = total.ass_re / np.maximum(1.0, tp)
    ass_pr = total.ass_pr / np.maximum(1.0, tp)
    loc_a = np.maximum(1e-10, total.loc) / np.maximum(1e-10, tp)
    values = {"pHOTA": np.sqrt(det_a * ass_a), "DetA": det_a, "AssA": ass_a, "DetRe": det_re, "DetPr": det_pr,
              "AssRe": ass_re, "AssPr": ass_pr, "LocA": loc_a, "OWTA": np.sqrt(det_re * ass_a)}
    return {name: float(np.mean(v)) for name, v in values.items()} | {"sequences": len(sequences)}


def _by_id(items: Sequence[Any], what: str) -> dict[str | int, Any]:
    out: dict[str | int, Any] = {}
    for item in items:
        if item.pair_id in out:
            raise InputError(f"{what}: pair id {item.pair_id!r} appears twice")
        out[item.pair_id] = item
    return out


def video_metrics(gt: Sequence[VideoPhraseGT], pred: Sequence[VideoPhrasePred],
                  score_threshold: float = SCORE_THRESHOLD) -> dict[str, Any]:
    """Video cgF1 (and the rest of :func:`eval.saco.metrics.summarize_counts`) and pHOTA of ``pred``.

    Every pair of ``gt`` is scored (a pair without predictions has an empty answer). Raises
    :class:`InputError` for predictions of unknown pairs, duplicate ids or mismatched video lengths.
    """
    truth, answers = _by_id(gt, "ground truth"), _by_id(pred, "predictions")
    unknown = set(answers) - set(truth)
    if unknown:
        raise InputError(f"predictions for pairs not in the ground truth: {sorted(map(str, unknown))[:5]}")
    counts, hota = [], []
    for pair_id, pair in truth.items():
        masklets = answers[pair_id].masklets if pair_id in answers else ()
        counts.append(video_pair_counts(pair.masklets, masklets, score_threshold))
        hota.append(hota_sequence(pair.masklets, masklets, score_threshold))
    return {**summarize_counts(counts), **summarize_hota(hota)}
