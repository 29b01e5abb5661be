"""A fast, safe SAM 3 engine on top of the ``transformers`` implementation.

``Sam3Engine`` encodes each image once (LRU cache in bytes), runs many phrases in one batched pass,
micro-batches concurrent callers on one worker thread, and refines single objects from clicks with
the tracker sharing the detector's backbone.

The heavy names (anything that imports torch) load on first use, so ``from sam3_core.errors import
...`` stays cheap for tools that only need the exceptions.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import (
    AdmissionError,
    CheckpointError,
    ImageError,
    ImageTooLarge,
    InputError,
    ModelRetry,
    PromptError,
    RunFailed,
    Sam3AgentError,
    UsageError,
)

_LAZY = {
    "AdmissionLimits": "admission",
    "EngineOptions": "engine",
    "Sam3Engine": "engine",
    "LoadedImage": "images",
    "load_image": "images",
    "PhraseResult": "results",
    "RefineResult": "results",
    "SegmentationResults": "results",
    "plot_results": "plotting",
}

__all__ = [
    "AdmissionError",
    "AdmissionLimits",
    "CheckpointError",
    "EngineOptions",
    "ImageError",
    "ImageTooLarge",
    "InputError",
    "LoadedImage",
    "ModelRetry",
    "PhraseResult",
    "PromptError",
    "RefineResult",
    "RunFailed",
    "Sam3AgentError",
    "Sam3Engine",
    "SegmentationResults",
    "UsageError",
    "load_image",
    "plot_results",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
