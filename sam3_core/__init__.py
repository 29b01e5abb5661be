"""A fast, safe SAM 3 engine on top of the ``transformers`` implementation.

``Sam3Engine`` encodes each image once (LRU cache in bytes), runs many phrases in one batched pass,
micro-batches concurrent callers on one worker thread, and refines single objects from clicks with
the tracker sharing the detector's backbone.
"""

from .engine import EngineOptions, Sam3Engine
from .errors import (
    CheckpointError,
    ImageError,
    InputError,
    ModelRetry,
    PromptError,
    RunFailed,
    Sam3AgentError,
    UsageError,
)
from .images import LoadedImage, load_image
from .results import PhraseResult, RefineResult

__all__ = [
    "CheckpointError",
    "EngineOptions",
    "ImageError",
    "InputError",
    "LoadedImage",
    "ModelRetry",
    "PhraseResult",
    "PromptError",
    "RefineResult",
    "RunFailed",
    "Sam3AgentError",
    "Sam3Engine",
    "UsageError",
    "load_image",
]
