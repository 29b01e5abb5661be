"""SA-Co image sets as an evaluation task: one query per image-phrase pair, scored with cgF1 and AP.

Each image-phrase pair (negative pairs included) is one sample whose query is the noun phrase. The
``direct`` planner sends the phrase to SAM 3 as it is (SA-Co phrases are already noun phrases) and
keeps every instance above ``--score-threshold`` with its score; the agent planner answers with its
chosen masks and their SAM 3 scores. Scoring (:mod:`eval.saco.metrics`) keeps answers scoring
``>= 0.5``, so for the direct planner a lower ``--score-threshold`` only adds AP candidates.

Per sample the record stores the pair's counts against each annotation (``counts``) and its COCO
matching for AP (``ap``). A run sums up as metrics per subset, their mean over subsets
(``average``: how the paper averages SA-Co/Gold) and all pairs pooled (``all``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from eval.saco.ap import pair_ap_stats, summarize_ap
from eval.saco.dataset import ImagePair, load_saco_images
from eval.saco.metrics import SCORE_THRESHOLD, PairCounts, pair_counts, select_oracle, summarize_counts, to_rles
from eval.tasks import EvalItem, Task, TaskSpec
from sam3_core.drawing import render_final
from sam3_core.errors import InputError
from sam3_core.postprocess import rle_to_mask

if TYPE_CHECKING:
    from agent.runner import AgentAnswer
    from eval.planners import DirectSettings

logger = logging.getLogger(__name__)

#: Headline metrics averaged over subsets (``average``) and shown in the report's table.
HEADLINE = ("cgF1", "IL_MCC", "positive_micro_F1", "AP")


def fit_masks(masks: np.ndarray, height: int, width: int, item_id: str) -> np.ndarray:
    """``(K, H', W')`` masks at ``(height, width)`` (nearest-neighbour, with a warning, when they differ)."""
    if len(masks) == 0:
        return np.zeros((0, height, width), dtype=bool)
    if masks.shape[1:] == (height, width):
        return masks
    logger.warning("sample %s: masks are %s but the ground truth is %s; resizing", item_id, masks.shape[1:],
                   (height, width))
    return np.stack([np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((width, height),
                                                                                  Image.Resampling.NEAREST)) > 127
                     for m in masks])


def score_threshold(options: Mapping[str, Any]) -> float:
    """The answer-score threshold of cgF1 (and pHOTA) in task options: ``score_threshold``, official 0.5."""
    value = options.get("score_threshold")
    if value is None:
        return SCORE_THRESHOLD
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise InputError(f"SA-Co score_threshold must be in [0, 1), got {value!r}")
    return float(value)


def oracle_counts(fields: Mapping[str, Any]) -> PairCounts:
    """The pair's most favourable counts over its annotations, from stored score fields."""
    return select_oracle([PairCounts.from_dict(c) for c in fields["counts"]])


def average_over_subsets(per_subset: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> dict[str, float]:
    """Mean of each of ``names`` over the subsets that have it (undefined values, -1, left out)."""
    out = {}
    for name in names:
        values = [m[name] for m in per_subset.values() if name in m and m[name] > -1]
        if values:
            out[name] = float(np.mean(values))
    return out


class SacoImageTask(Task):
    """SA-Co/Gold, Silver or Bronze image-phrase pairs.

    Options: ``media_dirs`` (subset -> image root, ``""`` for all), ``subsets`` (names to run, None: all),
    ``score_threshold`` (answers kept for cgF1; default and official value 0.5).
    """

    progress_name = "cgF1"
    ranked_detections = True

    def _load_items(self) -> list[EvalItem]:
        opts = self.spec.options
        pairs = load_saco_images(self.spec.data, self.spec.split, opts.get("media_dirs") or {}, opts.get("subsets"))
        return [EvalItem(p.id, p.phrase, p.image_path, (p.subset,), p) for p in pairs]

    async def direct(self, engine: Any, item: EvalItem, settings: DirectSettings) -> AgentAnswer:
        """SAM 3 alone on the pair's phrase, verbatim."""
        from eval.planners import direct_answer

        return await direct_answer(engine, item.image_path, item.query, settings, phrase=item.query)

    def score(self, item: EvalItem, masks: np.ndarray, scores: Sequence[float]) -> dict[str, Any]:
        pair: ImagePair = item.sample
        if len(masks) != len(scores):
            raise InputError(f"sample {item.id}: {len(masks)} masks but {len(scores)} scores")
        preds = to_rles(fit_masks(np.asarray(masks, dtype=bool), pair.height, pair.width, item.id))
        threshold = score_threshold(self.spec.options)
        counts = [pair_counts(gt.masks, preds, scores, gt.crowd, threshold).to_dict() for gt in pair.annotations]
        main = pair.annotations[0]
        ap = pair_ap_stats(to_rles(main.masks), main.crowd, preds, [float(s) for s in scores])
        return {"counts": counts, "ap": ap}

    def quality(self, item: EvalItem, fields: Mapping[str, Any]) -> float:
        """Mean F1 over IoU thresholds of the pair (1 for a correctly empty answer)."""
        counts = oracle_counts(fields)
        return 1.0 if counts.true_negative else float(np.clip(counts.local_f1().mean(), 0.0, 1.0))

    def summarize(self, scored: Sequence[tuple[EvalItem, Mapping[str, Any]]]) -> dict[str, Any]:
        if not scored:
            return {}
        by_subset: dict[str, list[Mapping[str, Any]]] = {}
        for item, fields in scored:
            by_subset.setdefault(item.groups[0], []).append(fields)

        def metrics(group: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
            return {**summarize_counts([oracle_counts(f) for f in group]), **summarize_ap([f["ap"] for f in group])}

        subsets = {name: metrics(group) for name, group in by_subset.items()}
        return {"subsets": subsets, "average": average_over_subsets(subsets, HEADLINE),
                "all": metrics([f for _, f in scored])}

    def progress_value(self, scored: Sequence[Mapping[str, Any]]) -> float | None:
        return summarize_counts([oracle_counts(f) for f in scored]).get("cgF1") if scored else None

    def draw_target(self, item: EvalItem, pixels: np.ndarray) -> Image.Image:
        gt = item.sample.annotations[0]
        masks = np.stack([rle_to_mask(r) for r in gt.masks]) if len(gt.masks) else np.zeros((0, *pixels.shape[:2]))
        return render_final(pixels, fit_masks(masks.astype(bool), *pixels.shape[:2], item.id))


def load_saco_task(spec: TaskSpec) -> Task:
    """The image or video SA-Co task of ``spec`` (``saco`` or ``saco_video``)."""
    if spec.dataset == "saco_video":
        from eval.saco.video_task import SacoVideoTask

        return SacoVideoTask(spec)
    return SacoImageTask(spec)
