"""Mask inputs as the post-processing functions take them: numpy or torch, any dtype, checked and made ``bool``.

Every nonzero value counts as foreground. Results go back as the input's kind (:func:`like`): a numpy input gives
numpy, a tensor input a tensor on its device. See :mod:`sam3_core.postprocess` for the shared conventions.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import torch

from sam3_core.errors import UsageError

MaskArray: TypeAlias = np.ndarray | torch.Tensor


def _check_ndim(shape: tuple[int, ...], ndim: int, what: str) -> None:
    if len(shape) != ndim:
        raise UsageError(f"{what} must have {ndim} dimensions, got shape {tuple(shape)}")


def to_bool_tensor(masks: MaskArray, ndim: int, what: str = "masks") -> torch.Tensor:
    """A ``bool`` tensor view of ``masks`` (numpy input shares memory where it can), same device."""
    if isinstance(masks, torch.Tensor):
        tensor = masks.detach()
    elif isinstance(masks, np.ndarray):
        array = masks if masks.dtype == np.bool_ else masks != 0
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    else:
        raise UsageError(f"{what} must be a numpy array or a torch tensor, got {type(masks).__name__}")
    _check_ndim(tuple(tensor.shape), ndim, what)
    return tensor if tensor.dtype == torch.bool else tensor != 0


def to_bool_numpy(masks: MaskArray, ndim: int, what: str = "masks") -> np.ndarray:
    """A ``bool`` numpy array of ``masks`` (tensors are copied to the CPU)."""
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    if not isinstance(masks, np.ndarray):
        raise UsageError(f"{what} must be a numpy array or a torch tensor, got {type(masks).__name__}")
    _check_ndim(masks.shape, ndim, what)
    return masks if masks.dtype == np.bool_ else masks != 0


def like(result: torch.Tensor, reference: MaskArray) -> MaskArray:
    """``result`` as the same kind as ``reference``: the tensor itself, or a numpy copy on the CPU."""
    return result if isinstance(reference, torch.Tensor) else result.cpu().numpy()
