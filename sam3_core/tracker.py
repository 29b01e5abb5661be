"""Single-object masks from clicks and boxes with ``Sam3TrackerModel``, on the detector's encoding.

The tracker has its own FPN neck but shares the ViT backbone with the detector, so we feed its neck
the cached backbone tokens instead of encoding the image again. The steps below mirror
``Sam3TrackerModel.get_image_features`` and ``get_image_embeddings`` from the neck onward; a test
checks the result against the model's own ``forward(pixel_values=...)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .detector import ImageFeatures
from .errors import PromptError
from .geometry import check_points, clip_boxes
from .postprocess import masks_to_boxes
from .results import RefineResult


@torch.inference_mode()
def tracker_embeddings(tracker, features: ImageFeatures) -> list[torch.Tensor]:
    """The tracker's per-level image embeddings ``[(1, C, h, w), ...]`` from cached backbone tokens."""
    tokens = features.backbone
    height, width = tracker.prompt_encoder.image_embedding_size
    spatial = tokens.view(1, height, width, -1).permute(0, 3, 1, 2)
    feature_maps, _ = tracker.vision_encoder.neck(spatial)
    feature_maps = list(feature_maps)
    # The mask decoder's high-resolution projections, precomputed once per image as the model does.
    feature_maps[0] = tracker.mask_decoder.conv_s0(feature_maps[0])
    feature_maps[1] = tracker.mask_decoder.conv_s1(feature_maps[1])
    feature_maps = [fm.flatten(2).permute(2, 0, 1) for fm in feature_maps]
    feature_maps[-1] = feature_maps[-1] + tracker.no_memory_embedding
    return [
        feat.permute(1, 2, 0).view(1, -1, *size)
        for feat, size in zip(feature_maps, tracker.backbone_feature_sizes)
    ]


def validate_clicks(points: Sequence[Sequence[float]] | None, point_labels: Sequence[int] | None,
                    box: Sequence[float] | None, size_hw: tuple[int, int]
                    ) -> tuple[list[list[float]] | None, list[int] | None, list[float] | None]:
    """Checked refine prompts: ``(points, point_labels, box)`` with the box clipped to the image.

    Points must be finite and on the ``(H, W)`` image; the box follows :func:`sam3_core.geometry.clip_boxes`.

    Raises:
        PromptError: for prompts the tracker cannot use (named in the message).
    """
    has_points = points is not None and len(points) > 0
    if not has_points and box is None:
        raise PromptError("refine needs at least one point or a box")
    clean_points = clean_labels = clean_box = None
    if has_points:
        array = check_points(points, size_hw)
        if point_labels is None or len(point_labels) != len(array):
            raise PromptError(f"got {len(array)} points but {0 if point_labels is None else len(point_labels)} "
                              "point labels; give one label (1 foreground, 0 background) per point")
        clean_labels = []
        for label in point_labels:
            if label not in (0, 1):
                raise PromptError(f"point labels must be 1 (foreground) or 0 (background), got {label!r}")
            clean_labels.append(int(label))
        clean_points = array.tolist()
    if box is not None:
        clean_box = clip_boxes([box], size_hw, what="box")[0].tolist()
    return clean_points, clean_labels, clean_box


@torch.inference_mode()
def run_refine(tracker, tracker_processor, embeddings: list[torch.Tensor], size_hw: tuple[int, int], *,
               points, point_labels, box, mask_input, multimask: bool | None, dtype: torch.dtype) -> RefineResult:
    """One object's mask; ``multimask=None`` uses three candidates for a lone click, else one."""
    height, width = size_hw
    device = embeddings[-1].device
    kwargs = {"original_sizes": [[height, width]], "return_tensors": "pt"}
    if points:
        kwargs["input_points"] = [[[[float(x), float(y)] for x, y in points]]]
        kwargs["input_labels"] = [[[int(v) for v in point_labels]]]
    if box is not None:
        kwargs["input_boxes"] = [[[float(v) for v in box]]]
    prompts = tracker_processor(**kwargs)
    model_inputs = {k: v.to(device) for k, v in prompts.items() if k in ("input_points", "input_labels", "input_boxes")}
    for key in ("input_points", "input_boxes"):
        if key in model_inputs:
            model_inputs[key] = model_inputs[key].to(dtype)
    if mask_input is not None:
        model_inputs["input_masks"] = _mask_prompt(mask_input, device, dtype)
    if multimask is None:
        multimask = bool(points) and len(points) == 1 and box is None
    output = tracker(image_embeddings=embeddings, multimask_output=multimask, **model_inputs)
    iou = output.iou_scores[0, 0].float()
    best = int(torch.argmax(iou))
    low_res = output.pred_masks[0, 0, best].float()
    full = F.interpolate(low_res[None, None], (height, width), mode="bilinear", align_corners=False)[0, 0]
    mask = (full > 0).cpu().numpy()
    return RefineResult(mask=mask, score=float(iou[best]), box=masks_to_boxes(mask[None])[0],
                        low_res_logits=low_res.cpu().numpy(), image_size=(height, width))


def _mask_prompt(mask_input: np.ndarray | torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A dense mask prompt ``(1, 1, h, w)``: float input is taken as logits (e.g. a previous
    ``RefineResult.low_res_logits``), bool input becomes +-10 logits. The model resizes it."""
    mask = torch.as_tensor(np.asarray(mask_input))
    if mask.ndim != 2:
        raise PromptError(f"mask_input must be a 2-D array (h, w), got shape {tuple(mask.shape)}")
    if mask.dtype == torch.bool:
        mask = torch.where(mask, 10.0, -10.0)
    return mask.to(device=device, dtype=dtype)[None, None]


def clean_mask_input(mask_input) -> np.ndarray | None:
    """A refine ``mask_input`` checked before it reaches the worker: a 2-D bool mask is kept, anything
    else becomes float32 logits ``(h, w)``.

    Raises:
        PromptError: not 2-D, not numeric, or a value that is not finite once in float32 (``1e39`` is not).
    """
    if mask_input is None:
        return None
    try:
        array = np.asarray(mask_input.detach().cpu() if isinstance(mask_input, torch.Tensor) else mask_input)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"mask_input must be a 2-D array (h, w): {exc}") from exc
    if array.ndim != 2 or 0 in array.shape:
        raise PromptError(f"mask_input must be a non-empty 2-D array (h, w), got shape {array.shape}")
    if array.dtype == np.bool_:
        return array
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise PromptError(f"mask_input must hold float logits or bools, got dtype {array.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        values = array.astype(np.float32)
    if not np.isfinite(values).all():
        raise PromptError("mask_input must hold finite logits (no NaN or infinity, nothing beyond float32)")
    return values
