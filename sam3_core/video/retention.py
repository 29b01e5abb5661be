"""Keeping a transformers SAM 3 video session's state bounded while propagation moves on.

What ``Sam3VideoInferenceSession`` keeps per frame, and grows with the video's length if left alone:

* ``output_dict_per_obj[i]["non_cond_frame_outputs"][t]`` -- for every object and every tracked frame:
  the memory features (``maskmem_features`` bf16, ``maskmem_pos_enc``), low-res mask logits
  (``pred_masks``), the full-resolution mask logits (``high_res_masks``, ~4 MB per object per frame for
  the released 1008 px model), the object pointer and score. The tracker only reads frames
  ``t - num_maskmem + 1 .. t - 1`` (memories) and ``t - max_object_pointers_in_encoder + 1 .. t - 1``
  (pointers), the other way round when tracking backwards.
* ``cond_frame_outputs`` -- one per object at creation, plus one every ``recondition_every_nth_frame``
  frames for well-detected objects. The tracker attends to the ``max_cond_frame_num`` closest ones and
  takes object pointers from every one in the past.
* ``frames_tracked_per_obj``, ``obj_id_to_tracker_score_frame_wise`` and ``suppressed_obj_ids`` (small
  per-frame dicts; the score dict is deep-copied on every frame, so it also costs time),
  ``unmatched_frame_inds`` / ``overlap_pair_to_frame_inds`` (frame lists for the hot-start heuristics),
  ``mask_inputs_per_obj`` (a full-resolution mask per detector-created object, consumed on its first frame).

:func:`trim_session` drops, after each frame, everything the next frames cannot read: non-conditioning
outputs outside ``window`` frames of the current frame and of the propagation's start frame (kept so a
backward pass after a forward one finds its memories), conditioning outputs beyond the closest
``max_cond_frames`` (user-prompted frames and the object's first frame are always kept), stored
``high_res_masks`` (only read inside the step that computed them), consumed mask inputs, per-frame score
and suppression dicts of other frames, and hot-start bookkeeping of objects past their hot-start period.

With an ``offload_device`` (CPU, for sessions on a GPU), the large tensors of outputs that are kept but not read
by the next frames -- non-conditioning frames kept only for an anchor, conditioning frames beyond the
``max_cond_frames`` closest -- move there; transformers moves what it reads back to the inference device itself.

One visible effect: clicks on a frame tracked long ago (outside the window) make a fresh conditioning
frame, whose mask comes from the clicks alone, as clicks on a never-tracked frame do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RetentionPolicy:
    """How much per-frame tracker state a session keeps.

    Attributes:
        window: non-conditioning frames kept on each side of the current frame (and of anchor frames).
            Must be at least ``max(num_maskmem, max_object_pointers_in_encoder)`` for exact tracking.
        max_cond_frames: conditioning frames kept per object besides user-prompted ones and its first.
        hotstart_delay: frames after an object's first frame during which hot-start removal can happen.
    """

    window: int
    max_cond_frames: int
    hotstart_delay: int
    offload_device: torch.device | None = None

    @classmethod
    def for_tracker(cls, tracker_config, hotstart_delay: int,
                    offload_device: torch.device | None = None) -> RetentionPolicy:
        """The smallest policy that changes nothing the tracker reads (given its config)."""
        window = max(int(tracker_config.num_maskmem), int(tracker_config.max_object_pointers_in_encoder)) + 1
        return cls(window=window, max_cond_frames=max(int(tracker_config.max_cond_frame_num), 1),
                   hotstart_delay=int(hotstart_delay), offload_device=offload_device)


#: Per-frame outputs moved to ``offload_device`` when cold (object pointers and scores are small and stay).
OFFLOADED_KEYS = ("maskmem_features", "maskmem_pos_enc", "pred_masks")


def _offload(entry: dict, device: torch.device) -> None:
    for key in OFFLOADED_KEYS:
        value = entry.get(key)
        if isinstance(value, torch.Tensor) and value.device != device:
            entry[key] = value.to(device)


def _near(frame: int, centres: Iterable[int], window: int) -> bool:
    return any(abs(frame - c) <= window for c in centres)


def _trim_object(state, obj_idx: int, frame_idx: int, anchors: tuple[int, ...], policy: RetentionPolicy,
                 protected: set[int]) -> None:
    outputs = state.output_dict_per_obj[obj_idx]
    centres = (frame_idx, *anchors)
    non_cond = outputs["non_cond_frame_outputs"]
    for t in [t for t in non_cond if not _near(t, centres, policy.window)]:
        del non_cond[t]
    cond = outputs["cond_frame_outputs"]
    optional = sorted((t for t in cond if t not in protected), key=lambda t: abs(t - frame_idx))
    for t in optional[policy.max_cond_frames:]:
        del cond[t]
    for stored in (*non_cond.values(), *cond.values()):
        stored.pop("high_res_masks", None)
    if policy.offload_device is not None:
        hot_cond = set(sorted(cond, key=lambda t: abs(t - frame_idx))[:policy.max_cond_frames])
        for t, stored in non_cond.items():
            if abs(t - frame_idx) > policy.window:
                _offload(stored, policy.offload_device)
        for t, stored in cond.items():
            if t not in hot_cond:
                _offload(stored, policy.offload_device)
    tracked = state.frames_tracked_per_obj.get(obj_idx)
    if tracked:
        for t in [t for t in tracked if not _near(t, centres, policy.window)]:
            del tracked[t]


def _trim_hotstart(state, frame_idx: int, policy: RetentionPolicy) -> None:
    first_frames = getattr(state, "obj_first_frame_idx", {})

    def settled(obj_id: int) -> bool:
        return abs(frame_idx - first_frames.get(obj_id, frame_idx)) > policy.hotstart_delay

    unmatched = getattr(state, "unmatched_frame_inds", {})
    for obj_id in [o for o in unmatched if settled(o)]:
        del unmatched[obj_id]
    overlaps = getattr(state, "overlap_pair_to_frame_inds", {})
    for pair in [p for p in overlaps if settled(p[1])]:
        del overlaps[pair]
    for name in ("obj_id_to_tracker_score_frame_wise", "suppressed_obj_ids"):
        per_frame = getattr(state, name, None)
        if per_frame:
            for t in [t for t in per_frame if t != frame_idx]:
                del per_frame[t]


def trim_session(state, frame_idx: int, policy: RetentionPolicy, *, anchors: tuple[int, ...] = ()) -> None:
    """Drop the per-frame state of ``state`` that frames near ``frame_idx`` no longer need.

    Args:
        state: a ``Sam3VideoInferenceSession`` (or ``Sam3TrackerVideoInferenceSession``), after the step
            on ``frame_idx`` has run.
        frame_idx: the frame just processed.
        policy: the retention limits.
        anchors: other frames whose neighbourhood is kept (the propagation's start frame).
    """
    new_inputs = set(getattr(state, "obj_with_new_inputs", []) or [])
    for obj_idx in list(state.output_dict_per_obj):
        obj_id = state.obj_idx_to_id(obj_idx)
        user_frames = set(state.point_inputs_per_obj.get(obj_idx, {}))
        first = getattr(state, "obj_first_frame_idx", {}).get(obj_id)
        cond = state.output_dict_per_obj[obj_idx]["cond_frame_outputs"]
        protected = user_frames | ({first} if first is not None else set()) | ({min(cond)} if cond else set())
        _trim_object(state, obj_idx, frame_idx, anchors, policy, protected)
        if obj_id not in new_inputs and obj_idx in state.mask_inputs_per_obj:
            state.mask_inputs_per_obj[obj_idx].clear()
    _trim_hotstart(state, frame_idx, policy)


@dataclass(frozen=True)
class HeldTensors:
    """Tensors reachable from a session: how many distinct storages and their bytes."""

    count: int
    bytes: int


def held_tensors(root: object) -> HeldTensors:
    """Count the distinct tensor storages reachable from ``root`` through dicts, lists, sets and attributes.

    Shared storages (views, slices of one batched tensor) count once, as they take memory once.
    """
    seen_objects: set[int] = set()
    storages: dict[int, int] = {}
    stack = [root]
    while stack:
        value = stack.pop()
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
            continue
        if id(value) in seen_objects or isinstance(value, (str, bytes, int, float, bool, type(None))):
            continue
        seen_objects.add(id(value))
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            stack.extend(value)
        elif hasattr(value, "__dict__") and not isinstance(value, torch.nn.Module):
            stack.extend(vars(value).values())
    return HeldTensors(count=len(storages), bytes=sum(storages.values()))
