"""Training pairs: one image, several phrases, each with its target boxes and masks.

A batch holds a few images and, for each, some phrases: the categories present (positives, with
all their instances as targets) and absent ones (negatives, with no target). The images go through the
vision encoder once; the trainer expands their features to the phrases, as the engine does at
inference. Augmentations (horizontal flip, a random crop) are applied to the image and its masks
together, and boxes are recomputed from the cropped masks, so the three always agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from sam3_core.phrases import MAX_TEXT_TOKENS

from .data import ImageRecord, all_phrases, instance_masks, load_image

IGNORE_BOX_LABEL = -10  # Sam3Model's padding label for geometry prompts


@dataclass(frozen=True)
class PairOptions:
    """How pairs are drawn. ``exemplar_prob``: chance that a positive pair also gets one of its
    ground-truth boxes as a visual (exemplar) prompt."""

    max_positives: int = 3
    hard_negatives: int = 2
    flip_prob: float = 0.5
    crop_prob: float = 0.5
    min_crop: float = 0.6
    exemplar_prob: float = 0.0
    augment: bool = True


def _boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """(T, H, W) bool masks to (T, 4) pixel xyxy boxes (exclusive right/bottom edges)."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes


def augment(image: np.ndarray, masks: np.ndarray, rng: np.random.Generator,
            options: PairOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flip and crop ``image`` (H, W, 3) and ``masks`` (T, H, W) alike.

    Returns the new image, masks and a (T,) bool array of instances kept (those with at least a
    quarter of their area and 4 pixels left after the crop).
    """
    if options.augment and rng.random() < options.flip_prob:
        image, masks = image[:, ::-1], masks[:, :, ::-1]
    keep = np.ones(len(masks), bool)
    if options.augment and rng.random() < options.crop_prob:
        h, w = image.shape[:2]
        scale = rng.uniform(options.min_crop, 1.0)
        ch, cw = max(8, int(h * scale)), max(8, int(w * scale))
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        before = masks.reshape(len(masks), -1).sum(1)
        image, masks = image[y0:y0 + ch, x0:x0 + cw], masks[:, y0:y0 + ch, x0:x0 + cw]
        after = masks.reshape(len(masks), -1).sum(1)
        keep = (after >= 4) & (after >= 0.25 * np.maximum(before, 1))
    return np.ascontiguousarray(image), np.ascontiguousarray(masks), keep


class PairDataset(Dataset):
    """Items are dicts: ``pixel_values`` (3, S, S) normalised; ``phrases`` (list[str]); per phrase
    ``boxes`` (T, 4 normalised xyxy), ``masks`` (T, S, S bool), ``exemplar`` (4 normalised cxcywh) or None.

    Args:
        records: from :func:`finetune.data.load_coco`.
        image_processor: the checkpoint's ``Sam3ImageProcessor`` (size, mean and std are read from it).
        options: pair drawing and augmentation.
        seed: per-item randomness is seeded from ``seed`` and the item index and the epoch, so runs repeat.
        vocabulary: the phrases hard negatives are drawn from (default: the records' categories).
        cache: keep decoded images and masks in memory (small datasets: decoding dominates a CPU step).
    """

    def __init__(self, records: list[ImageRecord], image_processor, options: PairOptions = PairOptions(),
                 seed: int = 0, vocabulary: list[str] | None = None, cache: bool = True) -> None:
        self.records = records
        self.options = options
        self.seed = seed
        self.epoch = 0
        self.vocabulary = vocabulary or all_phrases(records)
        self.size = int(image_processor.size["height"])
        self.mean = torch.tensor(image_processor.image_mean).view(3, 1, 1)
        self.std = torch.tensor(image_processor.image_std).view(3, 1, 1)
        self.cache = cache
        self._decoded: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.records)

    def _decode(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index in self._decoded:
            return self._decoded[index]
        record = self.records[index]
        image = load_image(record)
        masks = np.stack(instance_masks(record)) if record.instances else np.zeros((0, *image.shape[:2]), bool)
        if self.cache:
            self._decoded[index] = (image, masks)
        return image, masks

    def _pixels(self, image: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(image).permute(2, 0, 1).float().unsqueeze(0) / 255.0
        if tensor.shape[-2:] != (self.size, self.size):
                tensor = F.interpolate(tensor, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                   antialias=True)
        return (tensor[0] - self.mean) / self.std

    def _masks(self, masks: np.ndarray) -> torch.Tensor:
        if not len(masks):
            return torch.zeros(0, self.size, self.size, dtype=torch.bool)
        if masks.shape[-2:] == (self.size, self.size):
            return torch.from_numpy(masks)
        tensor = torch.from_numpy(masks).float().unsqueeze(1)
        return F.interpolate(tensor, size=(self.size, self.size), mode="nearest")[:, 0] > 0.5

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, masks = self._decode(index)
        image, masks, keep = augment(image, masks, rng, self.options)
        categories = [inst.category for inst, k in zip(record.instances, keep) if k]
        masks = masks[keep]
        h, w = image.shape[:2]
        boxes = _boxes_from_masks(masks) / np.array([w, h, w, h], np.float32) if len(masks) else np.zeros((0, 4))
        resized = self._masks(masks)
        present = list(dict.fromkeys(categories))
        rng.shuffle(present)
        positives = present[: self.options.max_positives]
        absent = [p for p in self.vocabulary if p not in set(categories)]
        hard = list(rng.choice(absent, size=min(self.options.hard_negatives, len(absent)), replace=False)) \
            if absent else []
        negatives = list(dict.fromkeys([*record.negatives, *hard]))
        phrases, targets = [], []
        for phrase in [*positives, *negatives]:
            idx = [i for i, c in enumerate(categories) if c == phrase]
            target_boxes = torch.as_tensor(boxes[idx], dtype=torch.float32).reshape(-1, 4)
            exemplar = None
            if idx and rng.random() < self.options.exemplar_prob:
                x0, y0, x1, y1 = target_boxes[int(rng.integers(len(idx)))].tolist()
                exemplar = torch.tensor([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])
            phrases.append(str(phrase))
            targets.append({"boxes": target_boxes, "masks": resized[idx], "exemplar": exemplar})
        return {"pixel_values": self._pixels(image), "phrases": phrases, "targets": targets}


class PairCollator:
    """Stacks items into one batch for :class:`finetune.model.Sam3ForTraining`.

    Output keys: ``pixel_values`` (N, 3, S, S); ``image_index`` (P,) image of each pair; ``input_ids`` and
    ``attention_mask`` (P, 32); ``targets`` (list of P dicts with ``boxes`` and ``masks``); and, when some pair
    has an exemplar, ``input_boxes`` (P, 1, 4 cxcywh) with ``input_boxes_labels`` (P, 1) (padding -10).
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def __call__(self, items: list[dict]) -> dict:
        phrases, targets, image_index = [], [], []
        for i, item in enumerate(items):
            phrases += item["phrases"]
            targets += item["targets"]
            image_index += [i] * len(item["phrases"])
        encoded = self.tokenizer(phrases, padding="max_length", max_length=MAX_TEXT_TOKENS, truncation=True,
                                 return_tensors="pt")
        batch = {"pixel_values": torch.stack([item["pixel_values"] for item in items]),
                 "image_index": torch.tensor(image_index), "input_ids": encoded["input_ids"],
                 "attention_mask": encoded["attention_mask"],
                 "targets": [{"boxes": t["boxes"], "masks": t["masks"]} for t in targets]}
        if any(t["exemplar"] is not None for t in targets):
            boxes = torch.zeros(len(targets), 1, 4)
            labels = torch.full((len(targets), 1), IGNORE_BOX_LABEL, dtype=torch.long)
            for i, t in enumerate(targets):
                if t["exemplar"] is not None:
                    boxes[i, 0], labels[i, 0] = t["exemplar"], 1
            batch["input_boxes"], batch["input_boxes_labels"] = boxes, labels
        return batch
