"""Loading SAM 3 weights from the hub or a folder, with errors that say what to do.

The released checkpoint ``facebook/sam3`` stores one ``sam3_video`` model: the detector
(``detector_model.*``), the tracker (``tracker_model.*``) and the tracker's own FPN neck
(``tracker_neck.*``). The detector and the tracker share the ViT backbone. We load the detector
with :class:`~transformers.Sam3Model`, the tracker with :class:`~transformers.Sam3TrackerModel`, and
then make the tracker use the detector's backbone module so its ~450M parameters live once in memory.

When a ``Sam3VideoModel`` is loaded anyway (video serving), :func:`image_models_from_video` gives the
image engine its detector and a tracker made of the video model's own modules, so images and videos
are served from one copy of the weights.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .defaults import DEFAULT_MODEL_ID
from .errors import CheckpointError
from .hub import hub_access

__all__ = ["DEFAULT_MODEL_ID", "LoadedModels", "hub_access", "load_models"]

logger = logging.getLogger(__name__)


# Key renames that take a sam3_video checkpoint into a Sam3TrackerModel. transformers ships the same
# mapping for "sam3_tracker", but in 5.20 its ``tracker_model.(.+) -> \1`` rule does not fire, which
# leaves the tracker's prompt encoder and mask decoder randomly initialised. Passing the mapping
# explicitly loads every tensor; ``_check_loaded`` below fails loudly if that ever regresses.
_TRACKER_KEY_MAPPING = {
    r"^detector_model\.vision_encoder\.backbone\.": "vision_encoder.backbone.",
    r"^tracker_neck\.": "vision_encoder.neck.",
    r"^tracker_model\.": "",
}


@dataclass
class LoadedModels:
    """What :func:`load_models` returns; ``tracker`` is None for detector-only checkpoints."""

    detector: nn.Module
    processor: object
    tracker: nn.Module | None
    tracker_processor: object | None
    shared_backbone: bool


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks CUDA when present, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None`` picks bfloat16 on GPU and float32 on CPU (CPU bf16 kernels are slow and lossy)."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                 "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}
        if dtype not in names:
            raise CheckpointError(f"unknown dtype {dtype!r}; use one of {sorted(names)}")
        return names[dtype]
    return dtype


def load_models(model_id: str, *, with_tracker: bool = True, token: str | None = None) -> LoadedModels:
    """Load the detector, its processor and (when the checkpoint has one) the tracker, on CPU.

    Moving to the device is left to the caller, after the backbone has been de-duplicated, so the
    GPU never holds two copies.
    """
    from transformers import Sam3Model, Sam3Processor, Sam3TrackerModel, Sam3TrackerProcessor

    common = {"token": token} if token else {}
    common.update(hub_access(model_id, token))
    with _translate_load_errors(model_id):
        processor = Sam3Processor.from_pretrained(model_id, **common)
        detector, info = Sam3Model.from_pretrained(model_id, output_loading_info=True, **common)
    _check_loaded("Sam3Model", model_id, info)
    detector.eval()

    tracker = tracker_processor = None
    shared = False
    if with_tracker and _has_tracker(model_id, common):
        with _translate_load_errors(model_id):
            tracker, info = Sam3TrackerModel.from_pretrained(
                model_id, output_loading_info=True, key_mapping=_TRACKER_KEY_MAPPING, **common
            )
        _check_loaded("Sam3TrackerModel", model_id, info)
        tracker.eval()
        tracker_processor = Sam3TrackerProcessor(image_processor=processor.image_processor)
        shared = share_backbone(detector, tracker)
    return LoadedModels(detector, processor, tracker, tracker_processor, shared)


def share_backbone(detector: nn.Module, tracker: nn.Module) -> bool:
    """Point the tracker at the detector's ViT backbone when their weights are identical.

    Returns True when shared. With differing weights (a fine-tuned tracker, say) both are kept.
    """
    det_backbone = detector.vision_encoder.backbone
    trk_backbone = tracker.vision_encoder.backbone
    det_state, trk_state = det_backbone.state_dict(), trk_backbone.state_dict()
    same = det_state.keys() == trk_state.keys() and all(
        det_state[k].shape == trk_state[k].shape and torch.equal(det_state[k], trk_state[k]) for k in det_state
    )
    if not same:
        logger.warning("tracker and detector backbones differ; keeping both copies in memory")
        return False
    tracker.vision_encoder.backbone = det_backbone
    return True


def image_models_from_video(video_model: nn.Module, model_id: str, *, token: str | None = None) -> LoadedModels:
    """The image engine's models as views of a loaded ``Sam3VideoModel``: no weight is copied.

    The detector is the video model's ``detector_model``. The tracker is a ``Sam3TrackerModel`` shell,
    built on the meta device, whose modules are replaced by the video model's: its prompt encoder,
    mask decoder and no-memory embedding (``tracker_model``), its FPN neck (``tracker_neck``) and the
    detector's ViT backbone. These are exactly the tensors :func:`load_models` would read from the
    checkpoint (see ``_TRACKER_KEY_MAPPING``), so results are the same. Only the small image
    processor is loaded from ``model_id``. The models stay on the video model's device and dtype.

    Raises:
        CheckpointError: the processor cannot be loaded, or the shell kept a parameter not replaced.
    """
    from transformers import Sam3Processor, Sam3TrackerConfig, Sam3TrackerModel, Sam3TrackerProcessor

    common = {"token": token} if token else {}
    common.update(hub_access(model_id, token))
    with _translate_load_errors(model_id):
        processor = Sam3Processor.from_pretrained(model_id, **common)
    fields = video_model.config.tracker_config.to_dict()
    fields.pop("model_type", None)
    with torch.device("meta"):
        tracker = Sam3TrackerModel(Sam3TrackerConfig(**fields))
    source = video_model.tracker_model
    tracker.shared_image_embedding = source.shared_image_embedding
    tracker.prompt_encoder = source.prompt_encoder
    tracker.mask_decoder = source.mask_decoder
    tracker.no_memory_embedding = source.no_memory_embedding
    tracker.vision_encoder.backbone = video_model.detector_model.vision_encoder.backbone
    tracker.vision_encoder.neck = video_model.tracker_neck
    unset = [name for name, tensor in [*tracker.named_parameters(), *tracker.named_buffers()] if tensor.is_meta]
    if unset:
        raise CheckpointError(f"cannot share the video model's tracker with the image engine: {unset[:3]} "
                              "have no counterpart in the video model")
    tracker.eval()
    tracker_processor = Sam3TrackerProcessor(image_processor=processor.image_processor)
    return LoadedModels(video_model.detector_model, processor, tracker, tracker_processor, shared_backbone=True)


def _has_tracker(model_id: str, common: dict) -> bool:
    """True when the checkpoint's config is a ``sam3_video`` one (detector + tracker weights)."""
    config_path = Path(model_id) / "config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text())
    else:
        from transformers import AutoConfig

        with _translate_load_errors(model_id):
            config = AutoConfig.from_pretrained(model_id, **common).to_dict()
    return config.get("model_type") == "sam3_video" and config.get("tracker_config") is not None


def _check_loaded(kind: str, model_id: str, info: dict) -> None:
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise CheckpointError(
            f"{model_id} does not hold all {kind} weights ({len(missing)} missing, e.g. {missing[:3]}); "
            "is it a SAM 3 checkpoint in the Hugging Face format?"
        )


class _translate_load_errors:
    """Context manager that turns the many ways loading fails into one :class:`CheckpointError`."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or isinstance(exc, CheckpointError):
            return False
        message = explain_load_error(self.model_id, exc)
        if message is None:
            return False
        raise CheckpointError(message) from exc


def explain_load_error(model_id: str, exc: BaseException) -> str | None:
    """A sentence that says what went wrong loading ``model_id`` and what to do, or None if unknown."""
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    name = type(exc).__name__
    local = Path(model_id).exists() or model_id.startswith((".", "/", "~"))
    if isinstance(exc, GatedRepoError) or "gated" in str(exc).lower():
        return (
            f"{model_id} is a gated repository: request access on its Hugging Face page, then log in with "
            "`hf auth login` or set HF_TOKEN to a token of the account that was granted access"
        )
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"no space left on disk while downloading {model_id}; free space or set HF_HOME to a larger disk"
    if isinstance(exc, RepositoryNotFoundError) or (not local and "401" in str(exc)):
        return (
            f"{model_id} was not found on the Hugging Face hub, or your token cannot see it; check the id, "
            "and for a private or gated repo log in with `hf auth login` or set HF_TOKEN"
        )
    if local:
        return f"cannot load a SAM 3 checkpoint from the folder {model_id}: {name}: {exc}"
    if isinstance(exc, LocalEntryNotFoundError) or os.environ.get("HF_HUB_OFFLINE") == "1":
        return (
            f"cannot fetch {model_id}: no network or offline mode and it is not in the local cache "
            f"({name}: {exc}); download it once with network access or pass a local folder"
        )
    if isinstance(exc, (OSError, ValueError, EnvironmentError)):
        return f"cannot load {model_id}: {name}: {exc}"
    return None
