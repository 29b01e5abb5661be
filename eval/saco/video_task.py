"""SA-Co/VEval as an evaluation task: one query per video-phrase pair, scored with video cgF1 and pHOTA.

The ``direct`` planner opens the pair's annotated frames as a video in SAM 3's video engine, prompts
the phrase, propagates forward over every frame and answers with one masklet per tracked object
(its score: the mean detection score over the frames where it is present; masklets scoring at or
below ``--score-threshold`` are dropped). The record stores the masklets (``masklets``: score and one
RLE or null per frame), so ``eval score`` rescores a run and :mod:`eval.saco.predictions` writes them
as a YouTube-VIS result file. The agent planner is not offered for video yet.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from eval.saco.dataset import ListedFrames, VideoPair, load_saco_videos
from eval.saco.metrics import PairCounts, summarize_counts
from eval.saco.task import average_over_subsets, score_threshold
from eval.saco.video_metrics import HotaSums, Masklet, hota_sequence, summarize_hota, video_pair_counts
from eval.tasks import EvalItem, Task
from sam3_core.drawing import render_final
from sam3_core.errors import InputError
from sam3_core.postprocess import rle_to_mask

if TYPE_CHECKING:
    from eval.planners import DirectSettings

HEADLINE = ("cgF1", "IL_MCC", "positive_micro_F1", "pHOTA")


@functools.cache
def _answer_class() -> type:
    """:class:`AgentAnswer` with the masklets that a video answer carries (built lazily: agent loads torch)."""
    from agent.runner import AgentAnswer

    @dataclass
    class VideoAnswer(AgentAnswer):
        masklets: list[dict[str, Any]] = field(default_factory=list)

        @property
        def extra_fields(self) -> dict[str, Any]:
            """Stored with the record next to the (empty) image masks."""
            return {"masklets": self.masklets}

    return VideoAnswer


def track_phrase(engine: Any, pair: VideoPair) -> list[dict[str, Any]]:
    """Masklets (``{"score", "frames"}``, frames = RLE or None) of SAM 3's video engine for the pair's phrase."""
    source = ListedFrames(pair.frames, name=pair.id)
    session = engine.start_session(source)
    tracks: dict[int, dict[str, Any]] = {}
    try:
        engine.add_text_prompts(session, [pair.phrase])
        for result in engine.propagate(session, start_frame=0, direction="forward"):
            for index, obj_id in enumerate(result.object_ids):
                if not result.masks[index].any():  # an object hidden on this frame is absent there
                    continue
                track = tracks.setdefault(obj_id, {"frames": [None] * len(pair.frames), "scores": []})
                track["frames"][result.frame_index] = result.rles[index]
                track["scores"].append(float(result.scores[index]))
    finally:
        engine.close_session(session)
    return [{"score": float(np.mean(t["scores"])), "frames": t["frames"]} for t in tracks.values() if t["scores"]]


def masklets_of(record: Mapping[str, Any]) -> list[Masklet]:
    """The predicted :class:`Masklet` list of a stored record."""
    try:
        return [Masklet(list(m["frames"]), score=float(m["score"])) for m in record.get("masklets", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"record {record.get('id')}: malformed masklets ({exc})") from exc


class SacoVideoTask(Task):
    """SA-Co/VEval video-phrase pairs (options as :class:`~eval.saco.task.SacoImageTask`); direct planner only."""

    progress_name = "cgF1"
    ranked_detections = True
    planners = ("direct",)

    def _load_items(self) -> list[EvalItem]:
        opts = self.spec.options
        pairs = load_saco_videos(self.spec.data, self.spec.split, opts.get("media_dirs") or {}, opts.get("subsets"))
        return [EvalItem(p.id, p.phrase, p.frames[0], (p.subset,), p) for p in pairs]

    async def direct(self, engine: Any, item: EvalItem, settings: DirectSettings) -> Any:
        """Track the phrase over the video; masklets above ``settings.score_threshold`` are the answer."""
        from agent.llm import Usage

        started = time.perf_counter()
        masklets = await asyncio.to_thread(track_phrase, engine, item.sample)
        kept = [m for m in masklets if m["score"] > settings.score_threshold]
        wall = time.perf_counter() - started
        return _answer_class()(
            query=item.query, status="answered" if kept else "no_mask", mask_ids=list(range(1, len(kept) + 1)),
            masks=np.zeros((0, 1, 1), dtype=bool), boxes=np.zeros((0, 4), dtype=np.float32),
            scores=[m["score"] for m in kept], phrases=[item.query] * len(kept), error="", steps=0, verify_calls=0,
            phrases_tried=[item.query], thread_id="", usage=Usage(),
            timings={"wall_s": wall, "sam_s": wall, "model_s": 0.0, "model_calls": 0, "tokens": 0}, masklets=kept)

    def score(self, item: EvalItem, masks: np.ndarray, scores: Sequence[float]) -> dict[str, Any]:
        raise InputError("SA-Co/VEval samples are scored from their masklets (score_record)")

    def score_record(self, item: EvalItem, record: Mapping[str, Any], masks: np.ndarray | None = None) -> dict:
        pair: VideoPair = item.sample
        predicted = masklets_of(record)
        threshold = score_threshold(self.spec.options)
        counts = video_pair_counts(pair.masklets, predicted, threshold)
        return {"counts": [counts.to_dict()], "hota": hota_sequence(pair.masklets, predicted, threshold).to_dict()}

    def quality(self, item: EvalItem, fields: Mapping[str, Any]) -> float:
        counts = PairCounts.from_dict(fields["counts"][0])
        return 1.0 if counts.true_negative else float(np.clip(counts.local_f1().mean(), 0.0, 1.0))

    def summarize(self, scored: Sequence[tuple[EvalItem, Mapping[str, Any]]]) -> dict[str, Any]:
        if not scored:
            return {}
        by_subset: dict[str, list[Mapping[str, Any]]] = {}
        for item, fields in scored:
            by_subset.setdefault(item.groups[0], []).append(fields)

        def metrics(group: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
            counts = [PairCounts.from_dict(f["counts"][0]) for f in group]
            return {**summarize_counts(counts), **summarize_hota([HotaSums.from_dict(f["hota"]) for f in group])}

        subsets = {name: metrics(group) for name, group in by_subset.items()}
        return {"subsets": subsets, "average": average_over_subsets(subsets, HEADLINE),
                "all": metrics([f for _, f in scored])}

    def progress_value(self, scored: Sequence[Mapping[str, Any]]) -> float | None:
        return summarize_counts([PairCounts.from_dict(f["counts"][0]) for f in scored]).get("cgF1") if scored else None

    def draw_target(self, item: EvalItem, pixels: np.ndarray) -> Image.Image:
        """The first frame with the ground-truth masklets present on it."""
        frames = [m.frames[0] for m in item.sample.masklets if m.frames and m.frames[0]]
        masks = np.stack([rle_to_mask(f) for f in frames]) if frames else np.zeros((0, *pixels.shape[:2]), dtype=bool)
        if masks.shape[1:] != pixels.shape[:2]:
            masks = np.zeros((0, *pixels.shape[:2]), dtype=bool)
        return render_final(pixels, masks)
