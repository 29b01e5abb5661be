"""Running SAM 3's concept detector on cached image features, many prompts per forward pass.

``Sam3Model`` does not broadcast one image over several prompts, but it accepts pre-computed
``vision_embeds``: we expand each cached feature map along the batch dimension (a view, no copy)
so N phrases on one image cost one text/decoder pass of batch N and no extra image encoding.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .admission import too_many_masks
from .cache import tensor_bytes
from .errors import AdmissionError
from .phrases import MAX_TEXT_TOKENS
from .results import PhraseResult

#: Pixels of float32 upsampled masks held at once (4 M pixels = 16 MB) while making full-size masks.
UPSAMPLE_CHUNK_PIXELS = 4_000_000


@dataclass
class ImageFeatures:
    """One image's encoding, as cached.

    Attributes:
        backbone: ``(1, S, C)`` ViT output tokens; the tracker builds its own features from these.
        fpn_hidden_states: the detector neck's feature maps, each ``(1, C', h, w)``.
        fpn_position_encoding: their position encodings, same shapes.
        image_size: original ``(H, W)``.
        tracker_embeddings: the tracker's per-level features, filled on the first refine call.
    """

    backbone: torch.Tensor
    fpn_hidden_states: tuple[torch.Tensor, ...]
    fpn_position_encoding: tuple[torch.Tensor, ...]
    image_size: tuple[int, int]
    tracker_embeddings: list[torch.Tensor] | None = None


@dataclass
class PromptSpec:
    """One row of a detector batch: a phrase (or ``"visual"``) and optional exemplar boxes.

    ``boxes`` are normalised ``cx, cy, w, h`` (as ``Sam3Model`` expects), ``box_labels`` 1 positive /
    0 negative. Instances scoring at or below ``score_threshold`` are dropped; mask probabilities above
    ``mask_threshold`` are foreground. When more than ``max_masks`` instances are kept, the row yields an
    :class:`~sam3_core.errors.AdmissionError` instead of a result (no full-size mask is made).
    """

    phrase: str
    boxes: torch.Tensor | None = None
    box_labels: torch.Tensor | None = None
    truncated: bool = False
    score_threshold: float = 0.5
    mask_threshold: float = 0.5
    max_masks: int | None = None


@torch.inference_mode()
def encode_images(detector, pixel_values: torch.Tensor, sizes: list[tuple[int, int]],
                  shared_positions: dict | None = None) -> list[ImageFeatures]:
    """Run the vision encoder on a batch ``(B, 3, S, S)`` and split the result per image.

    The FPN position encodings are sine functions of the feature-map shape alone, identical for every
    image (all are resized to the same square). With ``shared_positions`` (a dict the caller keeps),
    every image refers to one stored copy instead of its own: at full size that is ~56 MB of bf16
    per cached image saved, close to half of an entry.
    """
    output = detector.get_vision_features(pixel_values=pixel_values)
    positions = tuple(t[:1].clone() for t in output.fpn_position_encoding)
    if shared_positions is not None:
        key = tuple((tuple(t.shape), t.dtype, str(t.device)) for t in positions)
        positions = shared_positions.setdefault(key, positions)
    features = []
    for i, size in enumerate(sizes):
        features.append(ImageFeatures(
            backbone=output.last_hidden_state[i : i + 1].clone(),
            fpn_hidden_states=tuple(t[i : i + 1].clone() for t in output.fpn_hidden_states),
            fpn_position_encoding=positions,
            image_size=size,
        ))
    return features


def cached_bytes(features: ImageFeatures) -> int:
    """Bytes an entry adds to the cache: its own tensors, not the shared position encodings."""
    return tensor_bytes((features.backbone, features.fpn_hidden_states, features.tracker_embeddings))


def batched_vision_embeds(items: list[tuple[ImageFeatures, int]]):
    """Vision embeds for a batch where image ``k`` is repeated ``n_k`` times, in order.

    A single image is expanded (no copy); several images are concatenated.
    """
    from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

    def gather(select) -> tuple[torch.Tensor, ...]:
        levels = zip(*(select(feat) for feat, _ in items))
        counts = [n for _, n in items]
        if len(items) == 1:
            return tuple(level[0].expand(counts[0], *level[0].shape[1:]) for level in levels)
        return tuple(torch.cat([t.expand(n, *t.shape[1:]) for t, n in zip(level, counts)]) for level in levels)

    return Sam3VisionEncoderOutput(
        fpn_hidden_states=gather(lambda f: f.fpn_hidden_states),
        fpn_position_encoding=gather(lambda f: f.fpn_position_encoding),
    )


class SerialTokenizer:
    """A tokenizer callable from many threads: calls run one at a time.

    Hugging Face fast tokenizers keep their padding/truncation settings on the shared Rust object and
    change them per call, so a call without padding (counting tokens, in a caller's thread) racing a
    padded call (in the worker) can corrupt the padded batch. Tokenizing 32-token phrases is cheap,
    so a lock costs nothing measurable.
    """

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer
        self._lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self._lock:
            return self._tokenizer(*args, **kwargs)


def tokenize(tokenizer, phrases: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask ``(N, 32)``, padded like ``Sam3Processor`` and cut at 32 tokens."""
    encoded = tokenizer(phrases, padding="max_length", max_length=MAX_TEXT_TOKENS, truncation=True,
                        return_tensors="pt")
    return encoded["input_ids"].to(device), encoded["attention_mask"].to(device)


def count_tokens(tokenizer, phrase: str) -> int:
    """Tokens the phrase needs including start/end tokens (to detect truncation)."""
    return len(tokenizer(phrase)["input_ids"])


@torch.inference_mode()
def run_prompts(detector, tokenizer, items: list[tuple[ImageFeatures, list[PromptSpec]]], *,
                dtype: torch.dtype) -> list[list[PhraseResult]]:
    """One detector forward over every (image, prompt) pair in ``items``; results grouped like ``items``.

    All prompts in one call must agree on their number of boxes (callers group them), so no padding
    changes what any prompt sees.
    """
    device = items[0][0].fpn_hidden_states[0].device
    prompts = [p for _, specs in items for p in specs]
    input_ids, attention_mask = tokenize(tokenizer, [p.phrase for p in prompts], device)
    kwargs = {}
    if prompts[0].boxes is not None:
        kwargs["input_boxes"] = torch.stack([p.boxes for p in prompts]).to(device=device, dtype=dtype)
        kwargs["input_boxes_labels"] = torch.stack([p.box_labels for p in prompts]).to(device)
    outputs = detector(vision_embeds=batched_vision_embeds([(f, len(s)) for f, s in items]),
                       input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    sizes = [f.image_size for f, specs in items for _ in specs]
    flat = postprocess_outputs(outputs, prompts, sizes)
    grouped, start = [], 0
    for _, specs in items:
        grouped.append(flat[start : start + len(specs)])
        start += len(specs)
    return grouped


def postprocess_outputs(outputs, prompts: list[PromptSpec],
                        sizes: list[tuple[int, int]]) -> list[PhraseResult | AdmissionError]:
    """Scores, boxes and masks per prompt, computed as ``Sam3Processor.post_process_instance_segmentation``
    does (same operations in the same order), but with boolean masks and instances sorted by score.

    A row whose kept instances exceed its ``max_masks`` gets an :class:`AdmissionError` in its place, so
    that only its own request fails."""
    scores_all = outputs.pred_logits.float().sigmoid() * outputs.presence_logits.float().sigmoid()
    presence = outputs.presence_logits.float().sigmoid()[:, 0]
    results = []
    for row, (prompt, (height, width)) in enumerate(zip(prompts, sizes)):
        keep = scores_all[row] > prompt.score_threshold
        found = int(keep.sum())
        if prompt.max_masks is not None and found > prompt.max_masks:
            results.append(too_many_masks(found, prompt.max_masks, height * width))
            continue
        order = torch.argsort(scores_all[row][keep], descending=True, stable=True)
        scores = scores_all[row][keep][order]
        scale = torch.tensor([width, height, width, height], device=scores.device, dtype=torch.float32)
        boxes = outputs.pred_boxes[row].float()[keep][order] * scale
        masks = full_size_masks(outputs.pred_masks[row][keep][order], (height, width), prompt.mask_threshold)
        results.append(PhraseResult(
            phrase=prompt.phrase,
            masks=masks,
            boxes=boxes.cpu().numpy().astype(np.float32).reshape(-1, 4),
            scores=scores.cpu().numpy().astype(np.float32),
            presence_score=float(presence[row]),
            image_size=(height, width),
            truncated=prompt.truncated,
        ))
    return results


def full_size_masks(logits: torch.Tensor, size_hw: tuple[int, int], mask_threshold: float) -> np.ndarray:
    """Low-resolution mask logits ``(K, h, w)`` to boolean masks ``(K, H, W)``.

    Upsampled a few masks at a time, so the float32 intermediate stays near
    :data:`UPSAMPLE_CHUNK_PIXELS` pixels whatever ``K`` is; the output is the only full-size allocation.
    """
    height, width = size_hw
    out = np.zeros((len(logits), height, width), dtype=bool)
    step = max(1, UPSAMPLE_CHUNK_PIXELS // max(1, height * width))
    for start in range(0, len(logits), step):
        probs = logits[start : start + step].float().sigmoid()
        upsampled = F.interpolate(probs[None], size=(height, width), mode="bilinear", align_corners=False)[0]
        out[start : start + step] = (upsampled > mask_threshold).cpu().numpy()
    return out
