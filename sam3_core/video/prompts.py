"""Checking phrases, clicks and boxes for video sessions, and scaling them to the model's input."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from .. import geometry
from ..errors import PromptError
from ..phrases import MAX_TEXT_TOKENS

logger = logging.getLogger(__name__)


def add_phrase(state, tokenizer, text: str) -> int:
    """Register ``text`` in a ``Sam3VideoInferenceSession`` (tokenised once); returns its prompt id.

    Like ``Sam3VideoProcessor.add_text_prompt`` but phrases longer than the 32-token context are cut
    (with a warning) instead of failing inside the model.
    """
    prompt_id = state.add_prompt(text)
    if prompt_id not in state.prompt_input_ids:
        encoded = tokenizer(text, return_tensors="pt", padding="max_length", max_length=MAX_TEXT_TOKENS,
                            truncation=True)
        if len(tokenizer(text)["input_ids"]) > MAX_TEXT_TOKENS:
            logger.warning("phrase %r is longer than %d tokens and was truncated", text[:40], MAX_TEXT_TOKENS)
        state.prompt_input_ids[prompt_id] = encoded["input_ids"].to(state.inference_device)
        state.prompt_attention_masks[prompt_id] = encoded["attention_mask"].to(state.inference_device)
    return prompt_id


def check_points(points: Sequence[Sequence[float]], labels: Sequence[int] | None,
                 frame_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel ``(x, y)`` clicks as ``(P, 2)`` float64 and their labels ``(P,)`` (1 object, 0 background).

    ``labels`` defaults to all 1. Raises :class:`PromptError` for a bad shape or label, a value that is
    not finite, or an off-frame point (:func:`sam3_core.geometry.check_points`).
    """
    array = geometry.check_points(points, frame_size)
    values = [1] * len(array) if labels is None else list(labels)
    if len(values) != len(array) or any(isinstance(v, bool) or v not in (0, 1) for v in values):
        raise PromptError("point_labels must hold one 1 (on the object) or 0 (background) per point")
    return array, np.asarray(values, dtype=np.int64)


def check_box(box: Sequence[float], frame_size: tuple[int, int]) -> np.ndarray:
    """A pixel ``x1, y1, x2, y2`` box as ``(2, 2)`` corner points, clipped to the frame.

    Raises :class:`PromptError` when malformed, not finite or far off the frame
    (:func:`sam3_core.geometry.clip_boxes`).
    """
    try:
        array = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PromptError(f"box must be pixel [x1, y1, x2, y2]: {exc}") from exc
    if array.shape != (4,):
        raise PromptError(f"box must be pixel [x1, y1, x2, y2], got {array.tolist()}")
    return geometry.clip_boxes(array[None], frame_size, what="box")[0].reshape(2, 2)


def to_model_pixels(points_xy: np.ndarray, frame_size: tuple[int, int], input_size: tuple[int, int]) -> torch.Tensor:
    """Scale frame pixel ``(P, 2)`` x, y to the model input (the frame is resized to ``input_size`` h, w)."""
    height, width = frame_size
    scale = np.array([input_size[1] / width, input_size[0] / height])
    return torch.tensor(points_xy * scale, dtype=torch.float32)
