"""Grammar matchers for in-process generation.

:class:`GrammarCompiler` wraps one grammar library (xgrammar or llguidance) for one tokenizer: it
compiles grammars (cached by schema), makes one matcher per generated sequence, and applies bitmasks
to logits. :class:`agent.backends.logits.ConstrainedLogits` drives them during ``generate``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from typing import Any, Protocol

import torch

from agent.backends.grammar import LIBRARIES, CallGrammar, Library
from sam3_core.errors import UsageError

logger = logging.getLogger(__name__)

_CACHE_SIZE = 64
_BIT_SHIFTS = torch.arange(32, dtype=torch.int32)


class Matcher(Protocol):
    """One sequence's grammar state."""

    def fill(self, bitmask: torch.Tensor, row: int) -> None: ...
    def accept(self, token: int) -> bool: ...
    def done(self) -> bool: ...


class _XgrMatcher:
    def __init__(self, compiled: Any) -> None:
        import xgrammar as xgr

        self._m = xgr.GrammarMatcher(compiled)

    def fill(self, bitmask: torch.Tensor, row: int) -> None:
        self._m.fill_next_token_bitmask(bitmask, row)

    def accept(self, token: int) -> bool:
        return self._m.accept_token(token)

    def done(self) -> bool:
        return self._m.is_terminated()


class _LlgMatcher:
    def __init__(self, tokenizer: Any, grammar: str) -> None:
        import llguidance

        self._m = llguidance.LLMatcher(tokenizer, grammar)

    def fill(self, bitmask: torch.Tensor, row: int) -> None:
        from llguidance.torch import fill_next_token_bitmask

        fill_next_token_bitmask(self._m, bitmask, row)

    def accept(self, token: int) -> bool:
        return self._m.consume_token(token)

    def done(self) -> bool:
        return self._m.is_stopped()


def pack(allowed: list[bool], vocab_size: int) -> torch.Tensor:
    """Bitmask words (int32, bit ``t % 32`` of word ``t // 32``) of the tokens marked in ``allowed``."""
    bits = torch.zeros(((vocab_size + 31) // 32) * 32, dtype=torch.int64)
    bits[: len(allowed)] = torch.tensor(allowed, dtype=torch.int64)[:vocab_size]
    words = (bits.view(-1, 32) << torch.arange(32, dtype=torch.int64)).sum(dim=1)
    return torch.where(words >= 1 << 31, words - (1 << 32), words).to(torch.int32)


class GrammarCompiler:
    """One grammar library bound to one tokenizer; thread-safe, compiled grammars cached by schema."""

    def __init__(self, tokenizer: Any, vocab_size: int, library: str = "xgrammar") -> None:
        if library not in LIBRARIES:
            raise UsageError(f"grammar library must be one of {LIBRARIES}, got {library!r}")
        self.library: Library = library  # type: ignore[assignment]
        self.vocab_size = vocab_size
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Any] = OrderedDict()
        #: Each token's text (byte-level BPE keeps ASCII as is), for the prose budget.
        self.token_texts: list[str] = [t or "" for t in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))]
        #: Bitmask words allowing only the tokens that contain "<" (where a tag can start).
        self.tag_words = pack([("<" in t) for t in self.token_texts], vocab_size)
        if library == "xgrammar":
            import xgrammar as xgr

            info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
            self._xgr = xgr.GrammarCompiler(info, max_threads=1)
        else:
            import llguidance.hf

            self._llg = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size)
            added = set(tokenizer.get_added_vocab())
            self._markup = frozenset(t for t in ("<tool_call>", "</tool_call>", "<think>", "</think>") if t in added)

    def _compiled(self, grammar: CallGrammar) -> Any:
        key = json.dumps(grammar.schema, sort_keys=True)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        if self.library == "xgrammar":
            compiled = self._xgr.compile_grammar(grammar.xgrammar())
        else:
            import llguidance

            compiled = llguidance.LLMatcher.grammar_from_lark(grammar.lark(self._markup))
            error = llguidance.LLMatcher.validate_grammar(compiled, self._llg)
            if isinstance(error, str) and error:
                raise UsageError(f"llguidance rejected the call grammar: {error}")
        with self._lock:
            self._cache[key] = compiled
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return compiled

    def matcher(self, grammar: CallGrammar) -> Matcher:
        """A fresh matcher at the start of ``grammar``."""
        compiled = self._compiled(grammar)
        if self.library == "xgrammar":
            return _XgrMatcher(compiled)
        return _LlgMatcher(self._llg, compiled)

    def allocate(self, rows: int) -> torch.Tensor:
        """A bitmask tensor for ``rows`` sequences (int32, ``ceil(vocab / 32)`` words per row)."""
        return torch.full((rows, (self.vocab_size + 31) // 32), -1, dtype=torch.int32)

    def apply(self, logits: torch.Tensor, bitmask: torch.Tensor) -> None:
        """Set the logits of forbidden tokens to -inf, in place (``logits``: (rows, vocab), float).

        Plain torch, the same for both libraries (their bitmask layouts agree), so that measurements
        compare the grammar work only.
        """
        words = bitmask.to(logits.device)
        bits = (words.unsqueeze(-1) >> _BIT_SHIFTS.to(logits.device)) & 1  # (rows, words, 32), bit t%32 of word t//32
        allowed = bits.reshape(words.shape[0], -1)[:, : logits.shape[1]].bool()
        logits.masked_fill_(~allowed, float("-inf"))
