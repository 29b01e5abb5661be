"""One model step on one frame, driven through transformers' public session objects.

* :func:`detect_and_track` -- ``Sam3VideoModel`` on a frame: detector for every phrase (the frame is
  encoded once and shared by all phrases and by the tracker), tracker propagation, matching, new objects.
* :func:`track_only` -- the tracker alone (sessions with clicked objects but no phrases), using the same
  ViT + tracker neck features the detector path computes.
* :func:`apply_clicks` -- points (and a box, as two corner points) for one object on one frame.

All functions take the model (a ``Sam3VideoModel``) and a ``Sam3VideoInferenceSession`` and return a
:class:`~sam3_core.video.results.RawFrame` of low-resolution logits.
"""

from __future__ import annotations

import torch

from . import memory_fill
from .cleanup import fill_holes_and_remove_sprinkles
from .results import RawFrame, scores_of
from .session import CLICK_PROMPT_ID

# SAM point labels: 0 background click, 1 foreground click, 2 box top-left, 3 box bottom-right.
BOX_LABELS = (2, 3)


@torch.inference_mode()
def detect_and_track(model, state, frame_idx: int, reverse: bool) -> RawFrame:
    """Detector + tracker on ``frame_idx``; objects keep the ids transformers assigns."""
    out = model(inference_session=state, frame_idx=frame_idx, reverse=reverse)
    ids = sorted(int(i) for i in out.obj_id_to_mask)
    if ids:
        logits = torch.cat([out.obj_id_to_mask[i] for i in ids], dim=0)
    else:
        side = model.low_res_mask_size
        logits = torch.zeros(0, side, side, device=model.device)
    tracker = dict(out.obj_id_to_tracker_score or {})
    scores = {i: float(out.obj_id_to_score.get(i, tracker.get(i, 1.0))) for i in ids}
    return RawFrame(frame_idx, ids, logits, scores, {i: float(tracker.get(i, scores[i])) for i in ids},
                    hidden=set(out.suppressed_obj_ids or ()))


@torch.inference_mode()
def cache_frame_features(model, state, frame_idx: int) -> None:
    """Encode ``frame_idx`` for the tracker (ViT + tracker neck) into the session's feature cache.

    Only the ViT runs, not the detector's own FPN neck (``get_vision_features`` would run both): the tracker
    reads the ViT's last hidden state through its own neck, and frames with phrases are encoded afresh by
    ``Sam3VideoModel`` itself. That skips ~4% of a frame on the benchmark's mid-size model.
    """
    from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

    if state.cache.get_vision_features(frame_idx) is not None:
        return
    pixels = state.get_frame(frame_idx).unsqueeze(0)
    hidden = model.detector_model.vision_encoder.backbone(pixels).last_hidden_state
    feats, pos = model.get_vision_features_for_tracker(vision_embeds=Sam3VisionEncoderOutput(last_hidden_state=hidden))
    state.cache.cache_vision_features(frame_idx, {"vision_feats": feats, "vision_pos_embeds": pos})


def _tracker_frame(state, out, frame_idx: int) -> RawFrame:
    ids = [int(i) for i in out.object_ids]
    logits = out.pred_masks.reshape(len(ids), *out.pred_masks.shape[-2:])
    tracker = torch.sigmoid(out.object_score_logits.float().reshape(-1)).tolist()
    scores = {i: float(state.obj_id_to_score.get(i, 1.0)) for i in ids}
    return RawFrame(frame_idx, ids, logits, scores, scores_of(ids, tracker))


@torch.inference_mode()
def track_only(model, state, frame_idx: int, reverse: bool, clean_area: int = 0,
               max_objects_per_pass: int | None = None) -> RawFrame:
    """Propagate the session's objects to ``frame_idx`` with the tracker alone (no detection).

    ``clean_area > 0``: fill holes / remove specks up to that many low-res pixels once, and encode the memories
    from those cleaned masks (:func:`~sam3_core.video.memory_fill.encode_propagated`, at most
    ``max_objects_per_pass`` per encoder call); the returned frame is then marked ``cleaned``. ``0``: the
    tracker's own step, memories encoded as it does.
    """
    if state.get_obj_num() == 0:
        side = model.low_res_mask_size
        return RawFrame(frame_idx, [], torch.zeros(0, side, side, device=model.device), {}, {})
    cache_frame_features(model, state, frame_idx)
    tracker = model.tracker_model
    out = tracker(inference_session=state, frame_idx=frame_idx, reverse=reverse, run_mem_encoder=clean_area <= 0)
    frame = _tracker_frame(state, out, frame_idx)
    if clean_area > 0:
        frame.logits = fill_holes_and_remove_sprinkles(frame.logits, clean_area)
        frame.cleaned = True
        scores = out.object_score_logits.reshape(-1, 1)
        memory_fill.encode_propagated(tracker, state, frame_idx, frame.logits, scores, max_objects_per_pass)
    return frame


def register_click_object(model, state, obj_id: int, frame_idx: int) -> None:
    """Make ``obj_id`` a clicked object of ``state`` with the bookkeeping the detector path expects."""
    state.obj_id_to_idx(obj_id)
    state.obj_id_to_prompt_id[obj_id] = CLICK_PROMPT_ID
    state.obj_id_to_score[obj_id] = 1.0
    state.obj_first_frame_idx.setdefault(obj_id, frame_idx)
    state.trk_keep_alive[obj_id] = model.init_trk_keep_alive
    state.max_obj_id = max(state.max_obj_id, obj_id)


def protect_clicked(model, state, pinned: set[int]) -> None:
    """Keep the detector-matching heuristics from removing objects the user prompted.

    A clicked object never matches a detection (its prompt id is :data:`CLICK_PROMPT_ID`), so the
    hot-start rule would remove it after ``hotstart_unmatch_thresh`` frames; clearing its unmatched and
    duplicate counters after every frame (they grow by one per frame) keeps it.
    """
    for obj_id in pinned:
        state.unmatched_frame_inds.pop(obj_id, None)
        state.trk_keep_alive[obj_id] = model.init_trk_keep_alive
    for pair in [p for p in state.overlap_pair_to_frame_inds if p[1] in pinned]:
        del state.overlap_pair_to_frame_inds[pair]


@torch.inference_mode()
def apply_clicks(model, state, frame_idx: int, obj_id: int, coords: torch.Tensor, labels: torch.Tensor,
                 replace: bool) -> RawFrame:
    """Add clicks for ``obj_id`` on ``frame_idx`` and run the tracker there.

    Args:
        coords: ``(P, 2)`` float x, y in the model's input pixels (the frame resized to ``S x S``).
        labels: ``(P,)`` int SAM labels (0/1 clicks, 2/3 box corners; a box must come first).
        replace: drop this object's earlier clicks on this frame instead of adding to them.

    Returns:
        The frame's low-resolution logits for every object of the session.
    """
    obj_idx = state.obj_id_to_idx(obj_id)
    coords = coords.to(state.inference_device, torch.float32).view(1, 1, -1, 2)
    labels = labels.to(state.inference_device, torch.int32).view(1, 1, -1)
    previous = None if replace else state.point_inputs_per_obj[obj_idx].get(frame_idx)
    if previous is not None:
        coords = torch.cat([previous["point_coords"], coords], dim=2)
        labels = torch.cat([previous["point_labels"], labels], dim=2)
    state.point_inputs_per_obj[obj_idx][frame_idx] = {"point_coords": coords, "point_labels": labels}
    state.mask_inputs_per_obj[obj_idx].pop(frame_idx, None)
    state.obj_with_new_inputs = [obj_id]
    cache_frame_features(model, state, frame_idx)
    out = model.tracker_model(inference_session=state, frame_idx=frame_idx, reverse=False, run_mem_encoder=True)
    return _tracker_frame(state, out, frame_idx)
