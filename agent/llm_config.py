"""Where the multimodal LLM is and how to call it: :class:`LLMConfig` (no HTTP client imported here).

Kept apart from :mod:`agent.llm` so command lines and settings screens can read its defaults without
importing the OpenAI SDK; :mod:`agent.llm` re-exports it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from agent import tool_protocol as tp
from sam3_core.errors import UsageError


def _default_api_key() -> str:
    return os.environ.get("OPENAI_API_KEY") or "EMPTY"


@dataclass(frozen=True)
class LLMConfig:
    """Where the LLM is and how to call it.

    ``model`` empty means: ask the endpoint (``GET /v1/models``) and use the first model it serves.
    ``max_retries`` counts retries after the first attempt. ``image_max_pixels`` is the pixel budget
    of each image sent (None: no resizing). ``extra_body`` is merged into every request (e.g.
    ``{"chat_template_kwargs": {"enable_thinking": False}}`` or ``{"top_k": 20}`` for vLLM).
    ``max_concurrency`` caps requests in flight from this client (None: no cap). ``max_reply_bytes``
    bounds one reply's content, tool-call arguments and reasoning (UTF-8 bytes): a longer reply is not
    parsed and the model is asked again; the HTTP body read is bounded too (see :mod:`agent.reply_limits`).
    """

    base_url: str = "http://localhost:8000/v1"
    model: str = ""
    api_key: str = field(default_factory=_default_api_key, repr=False)
    timeout_s: float = 120.0
    max_retries: int = 4
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    temperature: float = 0.0
    max_tokens: int = 4096
    image_max_pixels: int | None = 1024 * 1024
    image_format: Literal["jpeg", "png"] = "jpeg"
    tool_protocol: tp.Protocol = tp.DEFAULT_PROTOCOL
    max_concurrency: int | None = None
    max_reply_bytes: int = 64 * 1024
    extra_body: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tool_protocol not in tp.PROTOCOLS:
            raise UsageError(f"tool_protocol must be one of {tp.PROTOCOLS}, got {self.tool_protocol!r}")
        if self.image_format not in ("jpeg", "png"):
            raise UsageError(f"image_format must be 'jpeg' or 'png', got {self.image_format!r}")
        if self.timeout_s <= 0 or self.max_retries < 0 or min(self.backoff_initial_s, self.backoff_max_s) < 0:
            raise UsageError("timeout_s must be > 0; max_retries and backoff times must be >= 0")
        if self.image_max_pixels is not None and self.image_max_pixels < 1:
            raise UsageError(f"image_max_pixels must be >= 1 or None, got {self.image_max_pixels}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise UsageError(f"max_concurrency must be >= 1 or None, got {self.max_concurrency}")
        if self.max_reply_bytes < 1024:
            raise UsageError(f"max_reply_bytes must be >= 1024, got {self.max_reply_bytes}")
