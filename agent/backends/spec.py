"""The ``--llm`` value: which backend answers, and where.

Syntax (one value per ``--llm``; several URLs make a pool)::

    http://host:8000/v1            an OpenAI-compatible endpoint (vLLM, SGLang, a hosted API)
    http://host:8000/v1#4          the same, with at most 4 requests in flight to it (pools)
    hf:Qwen/Qwen2.5-VL-7B-Instruct in-process transformers, a hub model id ...
    hf:/models/qwen3-vl-8b         ... or a local checkpoint folder
    vllm:Qwen/Qwen3-VL-8B-Instruct in-process vLLM (needs the optional ``vllm`` extra)

An in-process spec cannot be pooled with other specs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sam3_core.errors import UsageError

Kind = Literal["http", "hf", "vllm"]

#: The LLM the command line uses when no --llm is given: transformers in this process, next to SAM 3
#: (about 17 GB of GPU memory in bf16; downloaded from the hub on first use).
DEFAULT_LOCAL_SPEC = "hf:Qwen/Qwen3-VL-8B-Instruct"


@dataclass(frozen=True)
class LLMSpec:
    """One parsed ``--llm`` value: ``kind``, ``target`` (URL, model id or folder), ``max_in_flight``."""

    kind: Kind
    target: str
    max_in_flight: int | None = None

    def __str__(self) -> str:
        if self.kind == "http":
            return self.target + (f"#{self.max_in_flight}" if self.max_in_flight else "")
        return f"{self.kind}:{self.target}"


def parse_spec(text: str) -> LLMSpec:
    """Parse one ``--llm`` value (see the module docstring); UsageError names what is wrong."""
    value = (text or "").strip()
    for kind in ("hf", "vllm"):
        if value.startswith(f"{kind}:"):
            target = value[len(kind) + 1 :].strip()
            if not target:
                raise UsageError(f"--llm {value!r}: give a model id or folder after '{kind}:'")
            return LLMSpec(kind, target)  # type: ignore[arg-type]
    if not value.startswith(("http://", "https://")):
        raise UsageError(
            f"--llm {text!r} is not understood: use an http(s):// URL of an OpenAI-compatible endpoint, "
            "hf:<model id or folder> (in-process transformers) or vllm:<model> (in-process vLLM)"
        )
    url, _, limit = value.partition("#")
    if not limit:
        return LLMSpec("http", url)
    if not limit.isdigit() or int(limit) < 1:
        raise UsageError(f"--llm {text!r}: the part after '#' must be a request limit >= 1, got {limit!r}")
    return LLMSpec("http", url, int(limit))


def parse_specs(texts: Sequence[str]) -> list[LLMSpec]:
    """Parse several ``--llm`` values; an in-process spec must be the only one."""
    specs = [parse_spec(t) for t in texts]
    if not specs:
        raise UsageError("give at least one --llm value")
    if len(specs) > 1 and any(s.kind != "http" for s in specs):
        raise UsageError("only http(s) endpoints can be pooled; an hf: or vllm: model must be the only --llm")
    return specs
