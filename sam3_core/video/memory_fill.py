"""Hole filling and speck removal on the masks the tracker writes into its memory.

SAM 3's video model cleans a mask before its memory is encoded: background components of at most
``fill_hole_area`` low-resolution pixels become foreground and small foreground specks become background
(transformers' ``fill_holes_in_mask_scores``). transformers does this with a hub kernel and skips it when the
kernel cannot be loaded -- always, offline -- and its point/box tracker (``Sam3TrackerVideoModel``) never does
it. So offline, a hole the decoder leaves in one frame is remembered and tends to come back on the next ones.

:func:`install` wraps one tracker instance's ``_encode_new_memory``, the single step every path goes through
before memory encoding (the batched path of :mod:`sam3_core.video.batched`, transformers' one-object loop, and
the detector's memory update), so all of them encode a cleaned mask, in SAM 3's order where the masks allow:

* masks at the low-resolution size -- what the detector + tracker step (``_tracker_update_memories``) encodes
  -- are cleaned at that size with ``fill_hole_area`` as it is, as SAM 3 does before that step;
* larger masks -- transformers' tracker step encodes the decoder's masks upsampled to the model's input size
  (frames with clicks, tracker-only sessions with the fill off) -- are first resized to the memory encoder's
  input size exactly as transformers does it (bilinear, antialiased; it then leaves them alone) and cleaned
  there with the area converted from low-resolution pixels, e.g. 16 -> 256 for the released model (288 px
  low-resolution masks, 1152 px memory input).

With ``max_area <= 0`` nothing is wrapped, so memories are exactly transformers'.

Plain propagation of the tracker alone, the hot path of click-only sessions, runs the tracker without its
memory encoder and then :func:`encode_propagated`: the frame's low-resolution masks are cleaned once -- the
clean-up the frame's output gets anyway -- and the memories of all objects are encoded from those cleaned
masks in one batched pass. Against cleaning upsampled masks that skips the upsampling to the input size and
the labelling at 16x the pixels (16 objects of the tiny model: ~6 ms of a ~40 ms frame).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .batched import MemoryJob, encode_memories
from .cleanup import fill_holes_and_remove_sprinkles


def install(tracker, max_area: int, low_res_side: int) -> None:
    """Clean masks of ``tracker`` (a ``Sam3TrackerVideoModel``) before memory encoding; ``max_area <= 0`` undoes it.

    Args:
        max_area: holes / specks up to this many pixels of a ``low_res_side`` x ``low_res_side`` mask.
        low_res_side: side of the model's low-resolution masks (``Sam3VideoModel.low_res_mask_size``).
    """
    uninstall(tracker)
    if max_area <= 0:
        return
    if low_res_side < 1:
        raise ValueError(f"low_res_side must be >= 1, got {low_res_side}")
    side_h, side_w = memory_input_size(tracker)
    area = round(max_area * side_h * side_w / low_res_side**2)
    tracker._encode_new_memory = functools.partial(_encode_cleaned, tracker, max_area=area,
                                                   low_res=(low_res_side, max_area))


def uninstall(tracker) -> None:
    """Undo :func:`install` (no-op when it was not installed)."""
    tracker.__dict__.pop("_encode_new_memory", None)


def is_installed(tracker) -> bool:
    return "_encode_new_memory" in tracker.__dict__


def memory_input_size(tracker) -> tuple[int, int]:
    """``(H, W)`` of the masks the memory encoder reads (4x the prompt encoder's mask input, as transformers)."""
    height, width = tracker.prompt_encoder.mask_input_size
    return 4 * int(height), 4 * int(width)


def clean_for_memory(tracker, masks: torch.Tensor, max_area: int) -> torch.Tensor:
    """``(B, 1, h, w)`` mask logits -> ``(B, 1, H, W)`` at the memory input size, holes filled, specks removed.

    ``max_area`` is in pixels of the memory input size.
    """
    size = memory_input_size(tracker)
    if tuple(masks.shape[-2:]) != size:  # the resize transformers' ``_encode_new_memory`` applies
        masks = F.interpolate(masks.float(), size=size, align_corners=False, mode="bilinear",
                              antialias=True).to(masks.dtype)
    return fill_holes_and_remove_sprinkles(masks[:, 0], max_area).unsqueeze(1)


def _encode_cleaned(tracker, current_vision_feats: torch.Tensor, pred_masks_high_res: torch.Tensor,
                    object_score_logits: torch.Tensor, is_mask_from_pts: bool, *, max_area: int,
                    low_res: tuple[int, int]):
    side, low_res_area = low_res
    if tuple(pred_masks_high_res.shape[-2:]) == (side, side):  # the detector step's low-res masks
        masks = fill_holes_and_remove_sprinkles(pred_masks_high_res[:, 0], low_res_area).unsqueeze(1)
    else:
        masks = clean_for_memory(tracker, pred_masks_high_res, max_area)
    return type(tracker)._encode_new_memory(tracker, current_vision_feats=current_vision_feats,
                                            pred_masks_high_res=masks, object_score_logits=object_score_logits,
                                            is_mask_from_pts=is_mask_from_pts)


def encode_propagated(tracker, state, frame_idx: int, cleaned: torch.Tensor, score_logits: torch.Tensor,
                      limit: int | None) -> None:
    """Encode the memories of the objects the tracker propagated onto ``frame_idx`` from cleaned low-res masks.

    Call after the tracker ran on the frame with ``run_mem_encoder=False``; objects whose output there already
    has a memory (a prompted frame reused as it is) are left alone.

    Args:
        cleaned: ``(N, h, w)`` low-resolution logits of the session's ``N`` objects, holes filled and specks
            removed (:func:`~sam3_core.video.cleanup.fill_holes_and_remove_sprinkles`).
        score_logits: ``(N, 1)`` the tracker's object score logits (occlusion embedding of the memory).
        limit: most objects per memory-encoder call (``None``: all at once).
    """
    jobs = []
    for obj_idx in range(state.get_obj_num()):
        outputs = state.output_dict_per_obj[obj_idx]
        entry = outputs["cond_frame_outputs"].get(frame_idx) or outputs["non_cond_frame_outputs"].get(frame_idx)
        if entry is None or entry.get("maskmem_features") is not None:
            continue
        prompted = frame_idx in state.point_inputs_per_obj[obj_idx] or frame_idx in state.mask_inputs_per_obj[obj_idx]
        jobs.append(MemoryJob(obj_idx, cleaned[obj_idx:obj_idx + 1, None], score_logits[obj_idx:obj_idx + 1, None],
                              prompted))
    if jobs:
        # transformers' own encoder: the masks are clean already, so any wrapper from :func:`install` is skipped.
        encode_memories(tracker, state, frame_idx, jobs, limit,
                        encode=functools.partial(type(tracker)._encode_new_memory, tracker))
