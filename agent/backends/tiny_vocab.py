"""The small vocabulary of the tiny test checkpoints: a byte-level BPE learned offline from the project's text.

Every tiny family (:mod:`agent.backends.tiny_qwen`, :mod:`agent.backends.tiny_llama4`) builds its tokenizer
here with its own special tokens, so nothing is downloaded. The merges are learned from the project's
prompts plus a few tool-call shapes (or a caller's ``corpus``: benchmarks use a larger one for realistic
grammar costs); special tokens come first, each one token of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

#: Vocabulary size of the tiny checkpoints (special tokens included).
DEFAULT_VOCAB = 800


def project_corpus() -> list[str]:
    """Text to learn the tiny vocabulary from: the project's prompts plus JSON and tool-call shapes."""
    folder = Path(__file__).resolve().parents[2] / "prompts"
    texts = [p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.md"))]
    texts.append('{"name": "segment_phrase", "arguments": {"text_prompt": "red car"}}')
    texts.append('{"name": "select_masks_and_return", "arguments": {"mask_ids": [1, 2, 3]}}')
    texts.append('{"name": "report_no_mask", "arguments": {}} 0123456789 yes no')
    return texts


def train_bpe(special: Sequence[str], vocab_size: int = DEFAULT_VOCAB, corpus: list[str] | None = None,
              bos: str | None = None):  # -> tokenizers.Tokenizer
    """A byte-level BPE whose first ids are ``special``; with ``bos``, encoding puts that token first
    (as the real tokenizers of families whose chat template writes it do)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(corpus or project_corpus(), trainer=trainer)
    if bos is not None:
        bos_id = core.token_to_id(bos)
        core.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                            special_tokens=[(bos, bos_id)])
    return core
