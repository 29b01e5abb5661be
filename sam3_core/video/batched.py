"""Track many objects in one batched pass of transformers' SAM 3 tracker.

``Sam3TrackerVideoModel.forward`` runs memory attention and mask decoding once per object (its memory
encoding is already batched). Per-object work that small is bound by call overhead, not arithmetic: on the
tiny CPU model 16 objects cost ~6x one. :func:`install` replaces the forward of one tracker instance with
:func:`batched_forward`, which keeps transformers' behaviour and state layout but stacks objects:

* objects with new clicks/masks, or whose frame already has a conditioning output, take transformers' own
  per-object step (``_run_single_frame_inference``) exactly as before;
* the other objects (plain propagation, by far the common case) are grouped by the shape of their memory
  (spatial memory tokens, object-pointer tokens, direction) and each group runs memory attention, the prompt
  encoder, the mask decoder and the object-pointer head once, with objects on the batch dimension;
* memory encoding runs for all objects at once, as transformers does;
* on CPU, memory attention and memory encoding split a pass into sub-passes of :func:`cache_chunk` objects,
  so that their widest activation (objects x tokens x feed-forward width) stays cache-sized: on the
  benchmark's mid-size model one 16-object pass ran its memory attention ~1.4x slower than four 4-object
  passes, and slower than transformers' one-object loop.

Objects added or removed between frames simply change the groups of the next frame: an object added later
has fewer memories for a few frames and runs in its own group until its memory window fills up, then joins
the others. ``max_objects_per_pass`` caps a group's size, bounding the activations of one pass (memory
attention holds ``objects x tokens x memory tokens`` scores).

Only the modules' forwards are called (``memory_attention``, ``prompt_encoder``, ``mask_decoder``,
``object_pointer_proj``, ``memory_encoder``) plus transformers' own helpers that gather an object's
memories; the few lines of glue that select the best mask and gate the object pointer mirror
``_single_frame_forward``, whose multi-mask selection only handles one object per call.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

# transformers' placeholder logit for the mask of an object judged absent (``NO_OBJ_SCORE``).
NO_OBJECT_LOGIT = -1024.0


def install(tracker, max_objects_per_pass: int | None = None) -> None:
    """Make ``tracker`` (a ``Sam3TrackerVideoModel`` instance) track its objects in batches.

    Only this instance changes (its ``forward`` attribute); :func:`uninstall` restores transformers' loop.
    ``max_objects_per_pass``: most objects per batched pass (``None``: no limit).
    """
    if max_objects_per_pass is not None and max_objects_per_pass < 1:
        raise ValueError(f"max_objects_per_pass must be >= 1 or None, got {max_objects_per_pass}")
    tracker.forward = functools.partial(batched_forward, tracker, max_objects_per_pass=max_objects_per_pass)


def uninstall(tracker) -> None:
    """Undo :func:`install` (no-op when it was not installed)."""
    tracker.__dict__.pop("forward", None)


def is_installed(tracker) -> bool:
    return "forward" in tracker.__dict__


@dataclass
class _Plain:
    """An object on plain propagation, with the memory it attends to on this frame.

    ``memory`` / ``memory_pos``: ``(M, 1, C_mem)`` spatial memory tokens; ``offsets`` / ``tokens``: the
    temporal offsets and ``(1, 1, C)`` object pointers of earlier frames (turned into memory tokens for a whole
    group at once by :func:`_group_pointers`); ``max_pointers``: transformers' normaliser of the offsets.
    """

    obj_idx: int
    reverse: bool
    memory: torch.Tensor
    memory_pos: torch.Tensor
    offsets: list[int]
    tokens: list[torch.Tensor]
    max_pointers: int

    @property
    def key(self) -> tuple[bool, int, int, int]:
        return (self.reverse, int(self.memory.shape[0]), len(self.tokens), self.max_pointers)


@dataclass
class MemoryJob:
    """One object's mask to encode into memory on this frame (logits at any size the encoder resizes)."""

    obj_idx: int
    logits: torch.Tensor  # (1, 1, H, W) mask logits: the model's input size, or low-res ones
    score_logits: torch.Tensor  # (1, 1, 1)
    from_prompt: bool


@torch.inference_mode()
def batched_forward(tracker, inference_session, frame_idx: int | None = None, frame: torch.Tensor | None = None,
                    reverse: bool = False, run_mem_encoder: bool = True, *, max_objects_per_pass: int | None = None,
                    **kwargs):
    """Drop-in for ``Sam3TrackerVideoModel.forward``: the same arguments, state updates and output.

    Returns:
        ``Sam3TrackerVideoSegmentationOutput`` with ``pred_masks`` ``(N, 1, h, w)`` low-res logits and
        ``object_score_logits`` ``(N, 1)`` for the session's ``N`` objects in index order.
    """
    from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import (
        Sam3TrackerVideoSegmentationOutput,
    )

    state = inference_session
    if frame is not None:
        frame_idx = state.add_new_frame(frame, frame_idx)
    if frame is not None and state.get_obj_num() == 0:
        raise ValueError("No objects are provided for tracking; please add inputs first.")
    if tracker.num_maskmem == 0 or state.get_obj_num() == 1:
        # No memory, or one object: nothing to batch; transformers' own step does the same work without the
        # grouping's bookkeeping.
        return type(tracker).forward(tracker, state, frame_idx=frame_idx, frame=None, reverse=reverse,
                                     run_mem_encoder=run_mem_encoder)
    streaming = frame is not None
    count = state.get_obj_num()
    pred_masks: list[torch.Tensor | None] = [None] * count
    scores: list[torch.Tensor | None] = [None] * count
    jobs: list[MemoryJob] = []
    plain: list[_Plain] = []
    for obj_idx in range(count):
        obj_id = state.obj_idx_to_id(obj_idx)
        has_new_inputs = obj_id in state.obj_with_new_inputs
        outputs = state.output_dict_per_obj[obj_idx]
        if not has_new_inputs and frame_idx in outputs["cond_frame_outputs"]:
            pred_masks[obj_idx] = state.get_output(obj_idx, frame_idx, "pred_masks", is_conditioning_frame=True)
            scores[obj_idx] = state.get_output(obj_idx, frame_idx, "object_score_logits",
                                               is_conditioning_frame=True).squeeze(-1)
            continue
        if not has_new_inputs:
            plain.append(_gather_memory(tracker, state, obj_idx, frame_idx, reverse, streaming))
            continue
        # transformers turns ``reverse`` off for the rest of the loop once an object starts on this frame;
        # objects after it in index order see that, so keep the same (see the ``_Plain.reverse`` they record).
        reverse, out, from_prompt, is_init = _step_one(tracker, state, obj_idx, frame_idx, reverse, streaming)
        pred_masks[obj_idx], scores[obj_idx] = out["pred_masks"], out["object_score_logits"].squeeze(-1)
        jobs.append(MemoryJob(obj_idx, out["high_res_masks"], out["object_score_logits"], from_prompt))
        if not is_init:
            state.frames_tracked_per_obj[obj_idx][frame_idx] = {"reverse": reverse}
    for group in _groups(plain, max_objects_per_pass):
        for item, out in zip(group, _propagate_group(tracker, state, frame_idx, group, run_mem_encoder)):
            state.store_output(item.obj_idx, frame_idx, output_value=out, is_conditioning_frame=False)
            pred_masks[item.obj_idx], scores[item.obj_idx] = out["pred_masks"], out["object_score_logits"].squeeze(-1)
            jobs.append(MemoryJob(item.obj_idx, out["high_res_masks"], out["object_score_logits"], False))
            state.frames_tracked_per_obj[item.obj_idx][frame_idx] = {"reverse": item.reverse}
    if run_mem_encoder and jobs:
        encode_memories(tracker, state, frame_idx, jobs, max_objects_per_pass)
    return Sam3TrackerVideoSegmentationOutput(
        object_ids=state.obj_ids.copy(),
        pred_masks=torch.cat(pred_masks, dim=0) if count > 1 else pred_masks[0],
        object_score_logits=torch.cat(scores, dim=0) if count > 1 else scores[0],
        frame_idx=frame_idx,
    )


def _step_one(tracker, state, obj_idx: int, frame_idx: int, reverse: bool, streaming: bool):
    """transformers' own step for an object with new inputs; returns (reverse, outputs, from_prompt, is_init)."""
    obj_id = state.obj_idx_to_id(obj_idx)
    is_init = frame_idx not in state.frames_tracked_per_obj[obj_idx]
    if is_init:
        reverse = False
    point_inputs = state.point_inputs_per_obj[obj_idx].get(frame_idx, None)
    mask_inputs = state.mask_inputs_per_obj[obj_idx].get(frame_idx, None)
    if point_inputs is not None or mask_inputs is not None:
        state.obj_with_new_inputs.remove(obj_id)
    out = tracker._run_single_frame_inference(
        inference_session=state, obj_idx=obj_idx, frame_idx=frame_idx, batch_size=1, is_init_cond_frame=is_init,
        point_inputs=point_inputs, mask_inputs=mask_inputs, reverse=reverse, streaming=streaming)
    state.store_output(obj_idx, frame_idx, output_value=out, is_conditioning_frame=is_init)
    return reverse, out, point_inputs is not None or mask_inputs is not None, is_init


def _gather_memory(tracker, state, obj_idx: int, frame_idx: int, reverse: bool, streaming: bool) -> _Plain:
    """An object's spatial memories and object pointers for this frame, found by transformers' helpers."""
    device = state.inference_device
    entries = tracker._gather_memory_frame_outputs(state, obj_idx, frame_idx, reverse)
    memories, positions = tracker._build_memory_attention_inputs(entries, device)
    offsets, tokens, max_pointers = tracker._get_object_pointers(
        state, obj_idx, frame_idx, state.num_frames, device, reverse, streaming)
    memory = torch.cat(memories, dim=0).to(dtype=state.dtype)
    return _Plain(obj_idx, reverse, memory, torch.cat(positions, dim=0), list(offsets), list(tokens), max_pointers)


def _group_pointers(tracker, group: Sequence[_Plain], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The object-pointer memory tokens of a group, ``(P, B, C_mem)`` each for tokens and positions.

    What ``_process_object_pointers`` computes for one object, for all ``B`` at once: the pointers split into
    ``C_mem``-wide tokens, and a projected sine encoding of each pointer's temporal offset (offsets may differ
    between objects, e.g. ones prompted on different frames).
    """
    size, count = len(group), len(group[0].tokens)
    channels, mem_dim = tracker.hidden_dim, tracker.mem_dim
    device = group[0].memory.device
    # (B * S, C) in object-major order -> (S, B, C), the layout transformers stacks for one object.
    pointers = torch.cat([token.reshape(1, -1) for item in group for token in item.tokens], dim=0)
    pointers = pointers.to(dtype).reshape(size, count, channels).transpose(0, 1)
    if tracker.config.enable_temporal_pos_encoding_for_object_pointers:
        from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import get_1d_sine_pe

        offsets = torch.tensor([item.offsets for item in group], device=device, dtype=torch.float32)
        sine = get_1d_sine_pe(offsets / float(group[0].max_pointers - 1), dim=channels).to(dtype)
        pos = tracker.temporal_positional_encoding_projection_layer(sine).transpose(0, 1)  # (S, B, C_mem)
    else:
        pos = pointers.new_zeros(count, size, mem_dim)
    if mem_dim < channels:
        splits = channels // mem_dim
        pointers = pointers.reshape(count, size, splits, mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
        pos = pos.repeat_interleave(splits, dim=0)
    return pointers, pos


def _groups(plain: Sequence[_Plain], limit: int | None) -> Iterator[list[_Plain]]:
    """Objects with the same memory shape, in index order, at most ``limit`` per group."""
    by_key: dict[tuple, list[_Plain]] = {}
    for item in plain:
        by_key.setdefault(item.key, []).append(item)
    for members in by_key.values():
        step = limit or len(members)
        for start in range(0, len(members), step):
            yield members[start:start + step]


def _propagate_group(tracker, state, frame_idx: int, group: Sequence[_Plain], high_res: bool = True) -> list[dict]:
    """Memory attention + mask decoding for ``B`` objects at once; one output dict per object.

    Each dict holds ``pred_masks`` ``(1, 1, h, w)``, ``object_pointer`` ``(1, 1, C)``, ``high_res_masks``
    ``(1, 1, S, S)`` (``None`` when ``high_res`` is off: only memory encoding in this step reads them) and
    ``object_score_logits`` ``(1, 1, 1)``, as transformers' per-object step gives them.
    """
    size = len(group)
    feats, feat_pos = tracker._prepare_vision_features(state, frame_idx, 1)  # lists of (HW, 1, C)
    channels = tracker.hidden_dim
    height, width = tracker.backbone_feature_sizes[-1]
    memory = torch.cat([item.memory for item in group], dim=1)
    memory_pos = torch.cat([item.memory_pos for item in group], dim=1)
    pointers = 0
    if group[0].tokens:
        pointer_memory, pointer_pos = _group_pointers(tracker, group, memory.dtype)
        memory = torch.cat([memory, pointer_memory], dim=0)
        memory_pos = torch.cat([memory_pos, pointer_pos.to(memory_pos.dtype)], dim=0)
        pointers = int(pointer_memory.shape[0])
    conditioned = memory_attention(tracker.memory_attention, feats[-1], feat_pos[-1], memory, memory_pos, pointers)
    # (1, B, HW, C) -> (B, C, H, W); transformers' reshape here assumes one object.
    pix_feat = conditioned.reshape(size, height * width, channels).transpose(1, 2).reshape(
        size, channels, height, width)
    levels = [x.permute(1, 2, 0).reshape(1, x.size(2), *s)
              for x, s in zip(feats[:-1], tracker.backbone_feature_sizes[:-1])]
    decoded = decode_masks(tracker, pix_feat, levels, tracker._use_multimask(False, None), high_res=high_res)
    return [{key: None if value is None else value[i:i + 1] for key, value in decoded.items()} for i in range(size)]


def memory_attention(module, features: torch.Tensor, positions: torch.Tensor, memory: torch.Tensor,
                     memory_pos: torch.Tensor, pointers: int) -> torch.Tensor:
    """``module`` (transformers' memory attention) for ``B`` objects on one frame; ``(1, B, HW, C)`` out.

    Args:
        features / positions: ``(HW, 1, C)`` the frame's top-level features and their position encoding.
        memory / memory_pos: ``(M, B, C_mem)`` each object's memory tokens. pointers: object-pointer tokens
            at the end of the memory (no rotary encoding).

    The first layer's self-attention reads only the frame's features, the same for every object, so it runs
    once and its output is broadcast; the rest is the module's own layers, as its ``forward`` runs them, on
    :func:`cache_chunk` objects at a time.
    """
    size = memory.shape[1]
    first = module.layers[0] if len(module.layers) else None
    if first is None or not all(hasattr(first, name) for name in _LAYER_PARTS):  # another layout: no sharing
        return module(current_vision_features=features.expand(-1, size, -1),
                      current_vision_position_embeddings=positions.expand(-1, size, -1), memory=memory,
                      memory_posision_embeddings=memory_pos, num_object_pointer_tokens=pointers)
    queries = (features + 0.1 * positions).transpose(0, 1)  # (1, HW, C)
    rope = module.rotary_emb(queries, module.position_ids)
    queries = queries.unsqueeze(1)  # (1, 1, HW, C)
    query = first.layer_norm1(queries)
    query, _ = first.self_attn(query=query, key=query, value=query, position_embeddings=rope)
    shared = queries + first.dropout1(query)
    step = cache_chunk(features.device, features.shape[0] * first.linear1.out_features, size)
    outputs = []
    for start in range(0, size, step):
        keys = memory[:, start:start + step].transpose(0, 1).unsqueeze(1)  # (b, 1, M, C_mem)
        key_pos = memory_pos[:, start:start + step].transpose(0, 1).unsqueeze(1)
        outputs.append(_cross_layers(module, first, shared, keys, key_pos, rope, pointers))
    return (outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=0)).transpose(0, 1)


def _cross_layers(module, first, shared: torch.Tensor, keys: torch.Tensor, key_pos: torch.Tensor, rope,
                  pointers: int) -> torch.Tensor:
    """The rest of the memory attention for ``b`` objects: ``(1, 1, HW, C)`` shared queries in, ``(b, 1, HW, C)`` out.

    The first layer's cross-attention reads the shared queries: their norm, projection and rotary encoding run
    once (:func:`_shared_query_attention`).
    """
    query = _shared_query_attention(first.cross_attn_image, first.layer_norm2(shared), keys + key_pos, keys, rope,
                                    pointers)
    queries = shared + first.dropout2(query)
    query = first.linear2(first.dropout(first.activation(first.linear1(first.layer_norm3(queries)))))
    queries = queries + first.dropout3(query)
    for layer in module.layers[1:]:
        queries = layer(queries=queries, keys=keys, key_point_embedding=key_pos, rope_position_embeddings=rope,
                        num_k_exclude_rope=pointers)
    return module.layer_norm(queries)


def _shared_query_attention(attention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, rope,
                            pointers: int) -> torch.Tensor:
    """``attention`` (transformers' RoPE attention) with one query map for ``b`` objects' keys and values.

    What the module's ``forward`` computes for ``query.expand(b, ...)``, with the query projected and rotated
    once instead of ``b`` times. query: ``(1, 1, HW, C)``; key / value: ``(b, 1, M, C_mem)``; out
    ``(b, 1, HW, C)``.
    """
    from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import (
        ALL_ATTENTION_FUNCTIONS,
        apply_rotary_pos_emb_2d,
        eager_attention_forward,
    )

    size, heads, width = key.shape[0], attention.num_attention_heads, attention.head_dim
    query = attention.q_proj(query).view(1, -1, heads, width).transpose(1, 2)
    key = attention.k_proj(key).view(size, -1, heads, width).transpose(1, 2)
    value = attention.v_proj(value).view(size, -1, heads, width).transpose(1, 2)
    cos, sin = rope
    query, key = apply_rotary_pos_emb_2d(query, key, cos, sin, repeat_freqs_k=attention.rope_k_repeat,
                                         num_k_exclude_rope=pointers)
    interface = ALL_ATTENTION_FUNCTIONS.get_interface(attention.config._attn_implementation, eager_attention_forward)
    output, _ = interface(attention, query.expand(size, -1, -1, -1), key, value, attention_mask=None, dropout=0.0,
                          scaling=attention.scaling, is_causal=attention.is_causal)
    output = output.reshape(size, 1, -1, heads * width).contiguous()
    return attention.o_proj(output)


def cache_chunk(device: torch.device, elements_per_object: int, objects: int) -> int:
    """Objects per sub-pass so that a pass's widest activation stays near :data:`CPU_CHUNK_ELEMENTS` on CPU.

    On CPU the per-object work of a mid-size or larger tracker is arithmetic, not call overhead, and one pass
    over many objects makes feed-forward activations (``objects x HW x hidden``) far larger than the caches:
    16 objects of the benchmark's mid-size model run their memory attention ~1.4x slower in one pass than in
    passes of 4. GPUs are launch-bound at these sizes, so there all objects run together.
    """
    if device.type != "cpu":
        return max(objects, 1)
    return max(1, min(objects, CPU_CHUNK_ELEMENTS // max(elements_per_object, 1)))


#: Widest activation of one CPU sub-pass, in elements (16 MiB of float32: a few times a core's L2 cache and a
#: fraction of a typical shared L3, measured best on the 2-core benchmark machine).
CPU_CHUNK_ELEMENTS = 1 << 22


_LAYER_PARTS = ("layer_norm1", "self_attn", "dropout1", "layer_norm2", "cross_attn_image", "dropout2",
                "layer_norm3", "linear1", "activation", "dropout", "linear2", "dropout3")


def decode_masks(tracker, pix_feat: torch.Tensor, high_res_features: list[torch.Tensor],
                 multimask: bool, high_res: bool = True) -> dict[str, torch.Tensor | None]:
    """SAM mask decoding without prompts for ``B`` memory-conditioned feature maps.

    Args:
        pix_feat: ``(B, C, H, W)`` memory-conditioned features.
        high_res_features: the two higher-resolution maps of the frame, ``(1, C_i, H_i, W_i)`` each (the decoder
            only adds them, so one copy broadcasts over the objects).
        multimask: pick the best of the multi-mask outputs by predicted IoU (as in tracking).
        high_res: also upsample the masks to the model's input size (only memory encoding reads them).

    Returns:
        ``pred_masks`` ``(B, 1, h, w)``, ``high_res_masks`` ``(B, 1, S, S)`` (``S``: model input size; ``None``
        without ``high_res``),
        ``object_pointer`` ``(B, 1, C)``, ``object_score_logits`` ``(B, 1, 1)``.
    """
    size = pix_feat.shape[0]
    device, dtype = pix_feat.device, pix_feat.dtype
    # The positional map and the (empty) prompt are the same for every object: computed once, broadcast.
    positional = tracker.get_image_wide_positional_embeddings()
    points = torch.zeros(1, 1, 1, 2, dtype=dtype, device=device)
    labels = -torch.ones(1, 1, 1, dtype=torch.int32, device=device)  # "no point": padding for the prompt
    sparse, dense = tracker.prompt_encoder(input_points=points, input_labels=labels, input_boxes=None,
                                           input_masks=None)
    sparse = sparse.expand(size, -1, -1, -1)
    masks, iou, tokens, score_logits = tracker.mask_decoder(
        image_embeddings=pix_feat, image_positional_embeddings=positional, sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense, multimask_output=multimask, high_resolution_features=high_res_features)
    appearing = score_logits > 0  # (B, 1, 1)
    masks = torch.where(appearing[:, None, None], masks, NO_OBJECT_LOGIT)  # (B, 1, K, h, w)
    token = tokens[:, :, 0]
    if multimask:
        best = iou.argmax(dim=-1)  # (B, 1)
        low = masks.gather(2, best[:, :, None, None, None].expand(-1, -1, 1, *masks.shape[-2:])).squeeze(2)
        if tokens.size(2) > 1:
            token = tokens.gather(2, best[:, :, None, None].expand(-1, -1, 1, tokens.size(-1))).squeeze(2)
    else:
        low = masks[:, :, 0]
    # Bilinear resizing is per channel, so selecting first and resizing one mask equals transformers'
    # resize-all-then-select.
    high = None
    if high_res:
        high = F.interpolate(low.float(), size=(tracker.image_size, tracker.image_size), mode="bilinear",
                             align_corners=False).to(low.dtype)
    pointer = tracker.object_pointer_proj(token)
    gate = appearing.to(pointer.dtype)
    pointer = gate * pointer + (1 - gate) * tracker.no_object_pointer
    return {"pred_masks": low, "object_pointer": pointer, "high_res_masks": high,
            "object_score_logits": score_logits}


def encode_memories(tracker, state, frame_idx: int, jobs: Sequence[MemoryJob], limit: int | None,
                    encode: Callable | None = None) -> None:
    """Memory encoding of this frame's masks, at most ``limit`` objects per call, stored per object.

    As in transformers, masks are binarised (instead of passed through a sigmoid) for every object of the
    frame as soon as one of them was prompted on it. ``encode``: the ``_encode_new_memory`` to call (default:
    the tracker's, with any wrapper installed on it).
    """
    encode = encode or tracker._encode_new_memory
    feats, _ = tracker._prepare_vision_features(state, frame_idx, 1)
    from_prompt = any(job.from_prompt for job in jobs)
    fuser = tracker.memory_encoder.memory_fuser.layers
    width = max([getattr(getattr(layer, "pointwise_conv1", None), "out_features", 0) for layer in fuser]
                + [tracker.hidden_dim])
    step = cache_chunk(feats[-1].device, feats[-1].shape[0] * width, min(limit or len(jobs), len(jobs)))
    for start in range(0, len(jobs), step):
        chunk = jobs[start:start + step]
        features, positions = encode(
            current_vision_feats=feats[-1].expand(-1, len(chunk), -1),
            pred_masks_high_res=torch.cat([job.logits for job in chunk], dim=0),
            object_score_logits=torch.cat([job.score_logits for job in chunk], dim=0),
            is_mask_from_pts=from_prompt)
        for i, job in enumerate(chunk):
            outputs = state.output_dict_per_obj[job.obj_idx]
            key = "cond_frame_outputs" if frame_idx in outputs["cond_frame_outputs"] else "non_cond_frame_outputs"
            if frame_idx in outputs[key]:
                outputs[key][frame_idx]["maskmem_features"] = features[:, i:i + 1]
                outputs[key][frame_idx]["maskmem_pos_enc"] = positions[:, i:i + 1]
