"""Tiny randomly initialised vision-language checkpoints for tests and benchmarks, built offline.

:func:`write_tiny_llm` writes a folder laid out like a real hub checkpoint (``config.json``, weights,
``tokenizer.json``, ``tokenizer_config.json`` and a chat template, the processor's configs...), so it
loads through exactly the ``AutoProcessor`` / ``AutoModelForImageTextToText.from_pretrained`` path a real
model takes. Families: Qwen2.5-VL and Qwen3-VL (:mod:`agent.backends.tiny_qwen`) and Llama 4
(:mod:`agent.backends.tiny_llama4`); each module says what of it is real and what is ours. All share a
small byte-level BPE vocabulary learned from the project's own text (:mod:`agent.backends.tiny_vocab`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

from agent.backends.tiny_vocab import DEFAULT_VOCAB
from sam3_core.errors import UsageError

logger = logging.getLogger(__name__)

Family = Literal["qwen2_5_vl", "qwen3_vl", "llama4"]
FAMILIES: tuple[str, ...] = ("qwen2_5_vl", "qwen3_vl", "llama4")


def _check(family: str) -> None:
    if family not in FAMILIES:
        raise UsageError(f"family must be one of {FAMILIES}, got {family!r}")


def build_tokenizer(family: str, vocab_size: int = DEFAULT_VOCAB, corpus: list[str] | None = None):
    """The tiny tokenizer of ``family``: its special tokens and chat template over a small BPE (no download).

    ``corpus`` (default: the project's prompts) is the text the merges are learned from; a larger one
    gives a larger vocabulary, up to ``vocab_size`` (benchmarks use that for realistic grammar costs).
    """
    _check(family)
    if family == "llama4":
        from agent.backends import tiny_llama4

        return tiny_llama4.build_tokenizer(vocab_size, corpus)
    from agent.backends import tiny_qwen

    return tiny_qwen.build_tokenizer(family, vocab_size, corpus)


def _parts(family: str, tokenizer: Any) -> tuple[Any, Any, list[int], int]:
    if family == "llama4":
        from agent.backends import tiny_llama4

        return tiny_llama4.checkpoint_parts(tokenizer)
    from agent.backends import tiny_qwen

    return tiny_qwen.checkpoint_parts(family, tokenizer)


def write_tiny_llm(folder: str | Path, family: str = "qwen2_5_vl", *, seed: int = 0) -> Path:
    """Write a tiny random ``family`` checkpoint (model, tokenizer, processor) to ``folder``; returns it.

    Images become a few dozen visual tokens at most, so a reply takes milliseconds on a CPU.
    """
    _check(family)
    import torch
    from transformers import AutoModelForImageTextToText

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(family)
    config, processor, end_ids, pad_id = _parts(family, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config.eos_token_id = end_ids[0] if len(end_ids) == 1 else end_ids
    model.generation_config.pad_token_id = pad_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "TINY_RANDOM_MODEL.json").write_text(json.dumps({"family": family, "seed": seed}) + "\n")
    logger.info("wrote a tiny random %s checkpoint to %s", family, folder)
    return folder
