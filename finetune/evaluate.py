"""Held-out evaluation of a detector: COCO mask AP (pycocotools) and SA-Co's cgF1.

Every image is asked every phrase of the vocabulary (the categories), like COCO evaluates a detector.
For AP all queries are kept, ranked by ``sigmoid(logit) * sigmoid(presence)``; for cgF1 only those
scoring at least 0.5, and each (image, phrase) pair is one SA-Co pair (negative when the phrase is absent).

cgF1 comes from ``eval.saco.metrics.cgf1_from_masks`` (the SA-Co evaluation, as the official evaluator
defines it): cgF1 = 100 x pmF1 x IL_MCC, averaged over IoU thresholds 0.50:0.05:0.95.
"""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from sam3_core.phrases import MAX_TEXT_TOKENS

from .data import ImageRecord, instance_masks, load_image
from .model import base_sam3, expand_vision

logger = logging.getLogger(__name__)

SCORE_THRESHOLD = 0.5


@torch.no_grad()
def predict(model: torch.nn.Module, processor, records: list[ImageRecord], phrases: list[str],
            device: torch.device | str = "cpu") -> list[dict]:
    """Per (image, phrase): ``{"image_id", "phrase", "scores" (Q,), "masks" (Q, H, W) bool}`` at the image's size."""
    model = base_sam3(model)
    was_training = model.training
    model.eval()
    size = int(processor.image_processor.size["height"])
    mean = torch.tensor(processor.image_processor.image_mean).view(3, 1, 1)
    std = torch.tensor(processor.image_processor.image_std).view(3, 1, 1)
    encoded = processor.tokenizer(phrases, padding="max_length", max_length=MAX_TEXT_TOKENS, truncation=True,
                                  return_tensors="pt")
    dtype = next(model.parameters()).dtype
    out_list = []
    for record in records:
        image = torch.from_numpy(load_image(record)).permute(2, 0, 1).float()[None] / 255.0
        pixels = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        pixels = ((pixels[0] - mean) / std)[None].to(device, dtype)
        vision = expand_vision(model.get_vision_features(pixels), torch.zeros(len(phrases), dtype=torch.long))
        out = model(vision_embeds=vision, input_ids=encoded["input_ids"].to(device),
                    attention_mask=encoded["attention_mask"].to(device))
        scores = (out.pred_logits.float().sigmoid() * out.presence_logits.float().sigmoid()).cpu()
        masks = F.interpolate(out.pred_masks.float(), size=(record.height, record.width), mode="bilinear",
                              align_corners=False) > 0
        for p, phrase in enumerate(phrases):
            out_list.append({"image_id": record.image_id, "phrase": phrase, "scores": scores[p].numpy(),
                             "masks": masks[p].cpu().numpy()})
    model.train(was_training)
    return out_list


def _encode(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def mask_ap(records: list[ImageRecord], predictions: list[dict], phrases: list[str]) -> dict[str, float]:
    """COCO segmentation AP and AP50 (fractions in [0, 1]) of ``predictions`` from :func:`predict`."""
    cat_ids = {p: i + 1 for i, p in enumerate(phrases)}
    images, annotations = [], []
    for record in records:
        images.append({"id": record.image_id, "height": record.height, "width": record.width})
        for inst, mask in zip(record.instances, instance_masks(record)):
            if inst.category in cat_ids:
                annotations.append({"id": len(annotations) + 1, "image_id": record.image_id, "iscrowd": 0,
                                    "category_id": cat_ids[inst.category], "segmentation": _encode(mask),
                                    "area": float(mask.sum()), "bbox": inst.bbox})
    results = []
    for pred in predictions:
        for score, mask in zip(pred["scores"], pred["masks"]):
            if mask.any():
                results.append({"image_id": pred["image_id"], "category_id": cat_ids[pred["phrase"]],
                                "segmentation": _encode(mask), "score": float(score)})
    if not annotations or not results:
        return {"AP": 0.0, "AP50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": i, "name": p} for p, i in cat_ids.items()]}
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results), iouType="segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {"AP": float(max(evaluator.stats[0], 0.0)), "AP50": float(max(evaluator.stats[1], 0.0))}


def _pairs(records: list[ImageRecord], predictions: list[dict]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ground-truth masks (T, H, W), kept predicted masks (K, H, W)) per (image, phrase) pair."""
    by_image = {r.image_id: (r, instance_masks(r)) for r in records}
    pairs = []
    for pred in predictions:
        record, masks = by_image[pred["image_id"]]
        gt = [m for inst, m in zip(record.instances, masks) if inst.category == pred["phrase"]]
        keep = pred["scores"] >= SCORE_THRESHOLD
        gt_array = np.stack(gt) if gt else np.zeros((0, record.height, record.width), bool)
        pairs.append((gt_array, pred["masks"][keep]))
    return pairs


def cgf1(records: list[ImageRecord], predictions: list[dict]) -> dict[str, float]:
    """cgF1 (0-100), pmF1 (0-100) and IL_MCC ([-1, 1]) of ``predictions`` from :func:`predict`."""
    from eval.saco.metrics import ImagePhraseGT, ImagePhrasePred, cgf1_from_masks

    pairs = _pairs(records, predictions)
    gts = [ImagePhraseGT(pair_id=i, masks=gt) for i, (gt, _) in enumerate(pairs)]
    preds = [ImagePhrasePred(pair_id=i, masks=pred, scores=[1.0] * len(pred)) for i, (_, pred) in enumerate(pairs)]
    summary = cgf1_from_masks(gts, preds)
    return {"cgF1": 100 * float(summary["cgF1"]), "pmF1": 100 * float(summary["positive_micro_F1"]),
            "IL_MCC": float(summary["IL_MCC"])}


def duplicates(records: list[ImageRecord], predictions: list[dict], iou: float = 0.5) -> dict[str, float]:
    """How many masks a model keeps (score >= 0.5) per ground-truth instance (``kept_per_gt``), and the share of
    kept masks that overlap a higher-scored kept mask of the same pair with mask IoU >= ``iou`` (``dup_rate``).

    A detector without NMS relies on its queries to suppress one another; a training signal that rewards
    several queries per object (the one-to-many branch) shows up here first.
    """
    by_image = {r.image_id: r for r in records}
    kept = dup = gt = 0
    for pred in predictions:
        gt += sum(inst.category == pred["phrase"] for inst in by_image[pred["image_id"]].instances)
        order = [i for i in np.argsort(-pred["scores"]) if pred["scores"][i] >= SCORE_THRESHOLD]
        flat = pred["masks"][order].reshape(len(order), -1) if order else np.zeros((0, 0), bool)
        for a in range(len(order)):
            inter = (flat[:a] & flat[a]).sum(1)
            union = (flat[:a] | flat[a]).sum(1)
            dup += bool((inter >= iou * np.maximum(union, 1)).any() if a else False)
        kept += len(order)
    return {"kept_per_gt": kept / max(gt, 1), "dup_rate": dup / max(kept, 1)}


def evaluate(model: torch.nn.Module, processor, records: list[ImageRecord], phrases: list[str],
             device: torch.device | str = "cpu") -> dict[str, float]:
    """``{"AP", "AP50"}`` (fractions), ``{"cgF1", "pmF1", "IL_MCC"}`` and ``{"kept_per_gt", "dup_rate"}``
    (:func:`duplicates`) of ``model`` on ``records``."""
    predictions = predict(model, processor, records, phrases, device)
    return {**mask_ap(records, predictions, phrases), **cgf1(records, predictions),
            **duplicates(records, predictions)}
