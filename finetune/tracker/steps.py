"""Differentiable forward passes of transformers' SAM 3 tracker, for training.

Only transformers' modules and helpers run the network: the tracker neck (through
``Sam3VideoModel.get_vision_features_for_tracker``), the prompt encoder, the mask decoder, memory attention
(``_prepare_memory_conditioned_features``), the memory encoder (``_encode_new_memory``) and the mask-prompt
path (``_run_single_frame_inference``). The model's public ``forward`` runs under ``torch.inference_mode``,
so a clip is unrolled here frame by frame with the same per-object steps (the way
:mod:`sam3_core.video.batched` calls them), keeping autograd on. The tracker stays in ``eval()`` mode so that
every branch taken (mask binarisation for prompted memories, which object pointers are eligible) is the one
inference takes; only the mask decoder is switched to training mode by the trainer (see
:func:`finetune.tracker.train.train_tracker`).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from sam3_core.video import pointers

from .losses import TrackerLossWeights, tracker_loss

NO_OBJECT_LOGIT = -1024.0  # transformers' mask logit for an object judged absent


def tracker_features(video_model, tokens: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The tracker's three feature levels ``[(HW_l, B, C_l)]`` and their position encodings, from the
    detector's ViT tokens ``(B, HW, C_vit)`` (level 0 and 1 already projected by the mask decoder)."""
    return video_model.get_vision_features_for_tracker(SimpleNamespace(last_hidden_state=tokens))


def _maps(tracker, feats: list[torch.Tensor]) -> list[torch.Tensor]:
    """``(HW, B, C)`` levels -> ``(B, C, H, W)`` maps."""
    return [f.permute(1, 2, 0).reshape(f.shape[1], f.shape[2], *size)
            for f, size in zip(feats, tracker.backbone_feature_sizes)]


def decode(tracker, image_embedding: torch.Tensor, high_res: list[torch.Tensor], *, points=None, labels=None,
           boxes=None, multimask: bool):
    """Prompt encoder + mask decoder.

    Args:
        image_embedding: ``(B, C, H, W)`` top-level features (memory-conditioned, or plus the no-memory embedding).
        high_res: the two higher-resolution maps ``(B, C_i, H_i, W_i)``.
        points / labels: ``(B, P, n, 2)`` pixel ``x, y`` of the model input and ``(B, P, n)`` labels; boxes:
            ``(B, P, 4)`` pixel ``x1, y1, x2, y2``. With neither, one "no point" prompt (plain propagation).

    Returns:
        masks ``(B, P, K, h, w)`` logits, iou ``(B, P, K)``, tokens ``(B, P, K, C)``, scores ``(B, P, 1)``.
    """
    size = image_embedding.shape[0]
    if points is None and boxes is None:
        points = image_embedding.new_zeros(size, 1, 1, 2)
        labels = -torch.ones(size, 1, 1, dtype=torch.int32, device=image_embedding.device)
    sparse, dense = tracker.prompt_encoder(input_points=points, input_labels=labels, input_boxes=boxes,
                                           input_masks=None)
    positional = tracker.get_image_wide_positional_embeddings().repeat(size, 1, 1, 1)
    return tracker.mask_decoder(image_embeddings=image_embedding, image_positional_embeddings=positional,
                                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                multimask_output=multimask, high_resolution_features=high_res)


def frame_output(tracker, masks, iou, tokens, scores) -> dict[str, torch.Tensor]:
    """What inference keeps of one object's decoding (``B = P = 1``): the candidate with the highest predicted
    IoU, hidden when the object is judged absent, its high-res logits and its gated object pointer."""
    best = int(iou[0, 0].argmax())
    appearing = scores[0] > 0  # (1, 1)
    low = torch.where(appearing[..., None, None], masks[0, :, best:best + 1], NO_OBJECT_LOGIT)  # (1, 1, h, w)
    high = F.interpolate(low.float(), size=(tracker.image_size, tracker.image_size), mode="bilinear",
                         align_corners=False)
    token = tokens[0, :, best if tokens.shape[2] > 1 else 0]
    gate = appearing.to(token.dtype)
    pointer = gate * tracker.object_pointer_proj(token) + (1 - gate) * tracker.no_object_pointer
    return {"pred_masks": low, "object_pointer": pointer, "high_res_masks": high, "object_score_logits": scores[0]}


@dataclass
class PromptBatch:
    """Prompts for ``B`` images x ``P`` objects (see :func:`decode`), the targets ``(B, P, H, W)`` bool."""

    targets: torch.Tensor
    points: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    boxes: torch.Tensor | None = None
    multimask: bool = False


def image_loss(video_model, tokens: torch.Tensor, batch: PromptBatch,
               weights: TrackerLossWeights | None = None) -> torch.Tensor:
    """Refinement objective: masks from box/point prompts on single images (``tokens``: ``(B, HW, C_vit)``)."""
    tracker = video_model.tracker_model
    feats, _ = tracker_features(video_model, tokens)
    maps = _maps(tracker, feats)
    top = maps[-1] + tracker.no_memory_embedding[0, 0][None, :, None, None]
    masks, iou, _, scores = decode(tracker, top, maps[:-1], points=batch.points, labels=batch.labels,
                                   boxes=batch.boxes, multimask=batch.multimask)
    return tracker_loss(masks.flatten(0, 1), iou.flatten(0, 1), scores.flatten(0, 2),
                        batch.targets.flatten(0, 1), weights or TrackerLossWeights())


def jittered_box(mask: np.ndarray, rng: np.random.Generator, jitter: float) -> list[float]:
    """The mask's ``x1, y1, x2, y2`` box (pixel edges), each side moved by up to ``jitter`` x its length."""
    ys, xs = np.nonzero(mask)
    x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    w, h = x2 - x1, y2 - y1
    noise = rng.uniform(-jitter, jitter, 4) * np.array([w, h, w, h])
    size_h, size_w = mask.shape
    return [float(np.clip(x1 + noise[0], 0, size_w)), float(np.clip(y1 + noise[1], 0, size_h)),
            float(np.clip(x2 + noise[2], 0, size_w)), float(np.clip(y2 + noise[3], 0, size_h))]


def unroll_clip(video_model, tokens: torch.Tensor, masks: torch.Tensor, *, box_prompt: bool = False,
                rng: np.random.Generator | None = None, weights: TrackerLossWeights | None = None
                ) -> torch.Tensor:
    """Track every object of one clip from its first frame and return the mean per-frame loss.

    Frame 0 is prompted as ``track`` prompts it (the object's mask, as the detector hands it over) or, with
    ``box_prompt``, with its jittered box (a click-style start, trained too); frames 1..T-1 are predicted from
    memory alone and each prediction is encoded into memory for the next, as at inference.

    Args:
        tokens: ``(T, HW, C_vit)`` the detector's ViT tokens of each frame.
        masks: ``(N, T, H, W)`` bool ground truth at the model's input size.
    """
    from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import (
        Sam3TrackerVideoInferenceSession,
    )

    tracker, weights = video_model.tracker_model, weights or TrackerLossWeights()
    pointers.install(tracker)  # as the video engine does: the tracker is only as wide as its memory
    rng = rng or np.random.default_rng()
    num_frames = tokens.shape[0]
    feats, pos = tracker_features(video_model, tokens)
    session = Sam3TrackerVideoInferenceSession(video=tokens.new_zeros(num_frames, 3, 1, 1),
                                               video_height=masks.shape[-2], video_width=masks.shape[-1],
                                               dtype=tokens.dtype)
    total, count = tokens.new_zeros(()), 0
    for obj in range(masks.shape[0]):
        obj_idx = session.obj_id_to_idx(obj + 1)
        for t in range(num_frames):
            frame_feats = [f[:, t:t + 1] for f in feats]
            frame_pos = [p[:, t:t + 1] for p in pos]
            session.cache.cache_vision_features(t, {"vision_feats": frame_feats, "vision_pos_embeds": frame_pos})
            target = masks[obj, t]
            if t == 0 and not box_prompt:
                out = tracker._run_single_frame_inference(
                    inference_session=session, frame_idx=0, obj_idx=obj_idx, batch_size=1, is_init_cond_frame=True,
                    point_inputs=None, mask_inputs=target[None, None].float(), reverse=False)
                out["object_score_logits"] = (out["high_res_masks"] > 0).any().float()[None, None] * 20 - 10
            else:
                pix = tracker._prepare_memory_conditioned_features(
                    inference_session=session, frame_idx=t, obj_idx=obj_idx, is_initial_conditioning_frame=t == 0,
                    current_vision_features=frame_feats[-1], current_vision_positional_embeddings=frame_pos[-1],
                    num_total_frames=num_frames)
                high = _maps(tracker, frame_feats)[:-1]
                boxes = None
                if t == 0:
                    box = jittered_box(target.cpu().numpy(), rng, 0.1) if target.any() else [0.0, 0.0, 1.0, 1.0]
                    boxes = torch.tensor([[box]], dtype=pix.dtype)
                multimask = t > 0 and tracker._use_multimask(False, None)
                decoded = decode(tracker, pix, high, boxes=boxes, multimask=multimask)
                total = total + tracker_loss(decoded[0][0], decoded[1][0], decoded[3][0, :, 0], target[None], weights)
                count += 1
                out = frame_output(tracker, *decoded)
            session.store_output(obj_idx, t, output_value=out, is_conditioning_frame=t == 0)
            memory, memory_pos = tracker._encode_new_memory(
                current_vision_feats=frame_feats[-1], pred_masks_high_res=out["high_res_masks"],
                object_score_logits=out["object_score_logits"], is_mask_from_pts=t == 0)
            stored = session.output_dict_per_obj[obj_idx]["cond_frame_outputs" if t == 0 else "non_cond_frame_outputs"]
            stored[t]["maskmem_features"], stored[t]["maskmem_pos_enc"] = memory, memory_pos
    return total / max(count, 1)
