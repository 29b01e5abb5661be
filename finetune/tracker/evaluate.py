"""Held-out figures of a demo checkpoint's tracker, measured through the project's own engines.

* ``refine`` IoU: ``Sam3Engine.refine`` on synthetic images, prompted with each instance's tight box (or one
  click on the instance pixel nearest its centroid); mean mask IoU over instances.
* Tracking J: mean over ground-truth objects of the per-frame mask IoU, averaged over the clip's frames (an
  object missed on a frame scores 0 there). ``phrase``: ``VideoEngine`` tracks each phrase present in the clip
  (detector + tracker, what ``sam3-agent track`` runs); ground-truth objects are matched one-to-one to
  tracked objects of the same phrase by that J (Hungarian). ``box``: each object is prompted with its tight
  box on frame 0 and propagated by the tracker alone, isolating the tracker from the detector.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from finetune.synthetic import SyntheticSpec, draw_image

from .clips import Clip, ClipSpec, draw_clip


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def tight_box(mask: np.ndarray) -> list[float]:
    """Pixel-edge ``x1, y1, x2, y2`` of a bool mask."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def central_click(mask: np.ndarray) -> list[float]:
    """The instance pixel nearest the mask's centroid (inside even for concave shapes)."""
    ys, xs = np.nonzero(mask)
    k = int(np.argmin((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2))
    return [float(xs[k]) + 0.5, float(ys[k]) + 0.5]


def refine_iou(engine, count: int = 50, seed: int = 777, prompt: str = "box") -> float:
    """Mean IoU of ``engine.refine`` from each instance's box (``prompt="box"``) or a central click."""
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(count):
        image, objects = draw_image(rng, SyntheticSpec())
        for _, mask in objects:
            if prompt == "box":
                result = engine.refine(image, box=tight_box(mask))
            else:
                result = engine.refine(image, points=[central_click(mask)], point_labels=[1])
            scores.append(mask_iou(result.mask, mask))
    return float(np.mean(scores))


def held_out_clips(count: int = 10, seed: int = 888, num_frames: int = 8) -> list[Clip]:
    rng = np.random.default_rng(seed)
    return [c for c in (draw_clip(rng, ClipSpec(num_frames=num_frames)) for _ in range(count)) if c.names]


def _tracks(frames, num_frames: int, size: tuple[int, int]) -> dict[int, tuple[str | None, np.ndarray]]:
    """object id -> (phrase, (T, H, W) bool masks) from streamed ``FrameResult``s."""
    tracks: dict[int, tuple[str | None, np.ndarray]] = {}
    for result in frames:
        for k, obj in enumerate(result.object_ids):
            if obj not in tracks:
                tracks[obj] = (result.phrases[k], np.zeros((num_frames, *size), bool))
            tracks[obj][1][result.frame_index] = result.masks[k]
    return tracks


def clip_j(clip: Clip, tracks: dict[int, tuple[str | None, np.ndarray]], by_phrase: bool) -> list[float]:
    """Per ground-truth object J after one-to-one matching (objects of another phrase never match)."""
    ids = list(tracks)
    scores = np.zeros((len(clip.names), len(ids)))
    for n, (name, truth) in enumerate(zip(clip.names, clip.masks)):
        for k, obj in enumerate(ids):
            phrase, masks = tracks[obj]
            if by_phrase and phrase != name:
                continue
            scores[n, k] = np.mean([mask_iou(p, t) for p, t in zip(masks, truth)])
    per_object = np.zeros(len(clip.names))
    if ids:
        rows, cols = linear_sum_assignment(-scores)
        per_object[rows] = scores[rows, cols]
    return per_object.tolist()


def track_j(video_engine, clips: list[Clip], mode: str = "phrase") -> float:
    """Mean J over the clips' objects, ``mode`` ``"phrase"`` (detector + tracker) or ``"box"`` (tracker)."""
    values: list[float] = []
    for clip in clips:
        size = clip.frames.shape[1:3]
        sid = video_engine.start_session(list(clip.frames))
        try:
            ids = []
            if mode == "phrase":
                video_engine.add_text_prompts(sid, sorted(set(clip.names)))
            else:
                ids = [video_engine.add_box(sid, 0, tight_box(mask)).object_id for mask in clip.masks[:, 0]]
            tracks = _tracks(video_engine.propagate(sid), len(clip.frames), size)
        finally:
            video_engine.close_session(sid)
        if mode == "box":  # ids are known: ids[i] was started on ground-truth object i
            for obj, truth in zip(ids, clip.masks):
                masks = tracks[obj][1] if obj in tracks else np.zeros_like(truth)
                values.append(float(np.mean([mask_iou(p, t) for p, t in zip(masks, truth)])))
        else:
            values += clip_j(clip, tracks, by_phrase=True)
    return float(np.mean(values))
