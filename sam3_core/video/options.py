"""Settings of a :class:`~sam3_core.video.engine.VideoEngine`: limits, thresholds and clean-up."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..errors import UsageError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoOptions:
    """Limits and thresholds of a video engine. ``None`` keeps the checkpoint's own value.

    Attributes:
        max_sessions: most sessions open at once; starting one more raises :class:`UsageError`.
        idle_timeout_s: sessions unused for this long are closed (checked on every engine call).
        score_threshold: detector probability (object x presence) above which a detection counts
            (transformers' ``score_threshold_detection``, 0.5 in facebook/sam3).
        new_object_threshold: a detection matching no tracked object starts a new one above this
            (``new_det_thresh``, 0.7).
        hotstart_delay: frames results are held back so objects found to be spurious in their first
            frames can be removed from earlier frames too (15). Only for sessions with phrases.
        fill_hole_area: holes and specks up to this many pixels of the low-resolution mask are filled /
            removed in the output (``fill_hole_area``, 16); 0 turns it off.
        fill_holes_in_memory: apply the same clean-up (same area) to every mask before the tracker encodes
            it into memory, as SAM 3's video model does when transformers can load its hub kernel
            (:mod:`sam3_core.video.memory_fill`; plain propagation encodes the cleaned low-res masks, as that
            model does); ``False`` encodes masks as transformers does offline.
        nms_iou_threshold: objects created on the same frame by the same phrase whose masks overlap more
            than this (IoU) with a better one are dropped (``det_nms_thresh``, 0.1); 0 turns it off.
        decode_cache_frames: decoded video frames kept per session.
        keep_all_state: keep every frame's tracker state, as transformers does; memory then grows with
            the video's length. Only for comparisons: the default trims it as propagation moves on.
        batch_objects: propagate all tracked objects of a frame in batched passes
            (:mod:`sam3_core.video.batched`); ``False`` runs transformers' one-object-at-a-time loop.
        max_objects_per_pass: most objects in one batched pass (bounds the pass's activations; ``None``:
            no limit).
        offload_to_cpu: move tracker memories the next frames do not read (kept for prompted frames and
            for a later backward pass) to CPU memory. ``None``: on when the engine runs on a GPU.
    """

    max_sessions: int = 4
    idle_timeout_s: float = 900.0
    score_threshold: float | None = None
    new_object_threshold: float | None = None
    hotstart_delay: int | None = None
    fill_hole_area: int | None = None
    fill_holes_in_memory: bool = True
    nms_iou_threshold: float | None = None
    decode_cache_frames: int = 8
    keep_all_state: bool = False
    batch_objects: bool = True
    max_objects_per_pass: int | None = 16
    offload_to_cpu: bool | None = None

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise UsageError(f"max_sessions must be >= 1, got {self.max_sessions}")
        if self.idle_timeout_s <= 0:
            raise UsageError(f"idle_timeout_s must be > 0, got {self.idle_timeout_s}")
        for name in ("score_threshold", "new_object_threshold", "nms_iou_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise UsageError(f"{name} must be in [0, 1], got {value}")
        if self.max_objects_per_pass is not None and (isinstance(self.max_objects_per_pass, bool)
                                                      or self.max_objects_per_pass < 1):
            raise UsageError(f"max_objects_per_pass must be a positive integer or None, "
                             f"got {self.max_objects_per_pass!r}")
        for name in ("hotstart_delay", "fill_hole_area"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UsageError(f"{name} must be >= 0, got {value}")


@dataclass(frozen=True)
class ResolvedSettings:
    """The values in force for one engine, after ``None`` options were filled from the checkpoint."""

    hotstart_delay: int
    fill_hole_area: int
    nms_iou_threshold: float


def apply_options(model, options: VideoOptions) -> ResolvedSettings:
    """Set the detector/tracker thresholds of ``model`` (a ``Sam3VideoModel`` owned by one engine).

    transformers reads these from attributes the model copies from its config at construction, so
    setting them on the instance changes this model only.
    """
    if options.score_threshold is not None:
        model.score_threshold_detection = float(options.score_threshold)
    if options.new_object_threshold is not None:
        model.new_det_thresh = float(options.new_object_threshold)
    if options.hotstart_delay is not None:
        model.hotstart_delay = int(options.hotstart_delay)
        # transformers requires both hot-start counts to fit inside the delay.
        limit = max(1, model.hotstart_delay)
        model.hotstart_unmatch_thresh = min(model.hotstart_unmatch_thresh, limit)
        model.hotstart_dup_thresh = min(model.hotstart_dup_thresh, limit)
    fill = model.fill_hole_area if options.fill_hole_area is None else options.fill_hole_area
    nms = model.det_nms_thresh if options.nms_iou_threshold is None else options.nms_iou_threshold
    logger.debug("video thresholds: detection %.3f, new object %.3f, hotstart %d, fill %d, nms %.2f",
                 model.score_threshold_detection, model.new_det_thresh, model.hotstart_delay, fill, nms)
    return ResolvedSettings(hotstart_delay=int(model.hotstart_delay), fill_hole_area=int(fill),
                            nms_iou_threshold=float(nms))
