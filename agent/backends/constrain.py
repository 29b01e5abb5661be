"""Token masking for in-process generation: a :class:`CallGrammar` applied to transformers' ``generate``.

:class:`GrammarCompiler` wraps one grammar library (xgrammar or llguidance) for one tokenizer: it
compiles grammars (cached by schema) and makes one matcher per generated sequence.
:class:`ConstrainedLogits` is a ``LogitsProcessor`` holding one matcher per row of the batch: before
each step it feeds the row's last token to its matcher and masks every token the grammar forbids;
rows whose grammar is complete may only end.
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


class GrammarCompiler:
    """One grammar library bound to one tokenizer; thread-safe, compiled grammars cached by schema."""

    def __init__(self, tokenizer: Any, vocab_size: int, library: str = "xgrammar") -> None:
        if library not in LIBRARIES:
            raise UsageError(f"grammar library must be one of {LIBRARIES}, got {library!r}")
        self.library: Library = library  # type: ignore[assignment]
        self.vocab_size = vocab_size
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Any] = OrderedDict()
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
        key = json.dumps([grammar.schema, grammar.max_prose_chars], sort_keys=True)
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


def _only(bitmask: torch.Tensor, row: int, tokens: list[int]) -> None:
    """Allow exactly ``tokens`` in ``bitmask[row]`` (bit ``t % 32`` of word ``t // 32``, int32 words)."""
    bitmask[row].zero_()
    for token in tokens:
        bit = 1 << (token % 32)
        word = int(bitmask[row, token // 32]) | (bit - (1 << 32) if bit >= 1 << 31 else bit)
        bitmask[row, token // 32] = word


class ConstrainedLogits:
    """A transformers ``LogitsProcessor``: row ``i`` follows ``matchers[i]`` (None: unconstrained).

    ``prompt_len`` is the (padded) prompt length: the first call sees no generated token yet. A row
    whose matcher rejects a token (it cannot happen when every step was masked) stops being constrained
    and is logged.
    """

    def __init__(self, compiler: GrammarCompiler, matchers: list[Matcher | None], prompt_len: int,
                 eos_ids: list[int]) -> None:
        self.compiler, self.matchers, self.prompt_len = compiler, list(matchers), prompt_len
        self.eos_ids = eos_ids
        self.mask_seconds = 0.0  # time spent in grammar work, for bench/llm.py

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import time

        started = time.perf_counter()
        bitmask = self.compiler.allocate(scores.shape[0])
        used = False
        for row, matcher in enumerate(self.matchers):
            if matcher is None:
                continue
            if input_ids.shape[1] > self.prompt_len:
                token = int(input_ids[row, -1])
                if matcher.done() or not matcher.accept(token):
                    if token not in self.eos_ids and not matcher.done():
                        logger.warning("grammar rejected token %d in row %d; row left unconstrained", token, row)
                    self.matchers[row] = None
                    continue
            if matcher.done():
                _only(bitmask, row, self.eos_ids)
            else:
                matcher.fill(bitmask, row)
            used = True
        if used:
            vocab = scores.shape[1]
            self.compiler.apply(scores[:, : self.compiler.vocab_size] if vocab > self.compiler.vocab_size
                                else scores, bitmask)
        self.mask_seconds += time.perf_counter() - started
        return scores
