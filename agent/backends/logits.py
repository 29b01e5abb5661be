"""The logits processor that keeps in-process generation inside the call grammar.

:class:`ConstrainedLogits` holds one matcher per row of the batch: before each step it feeds the row's
last token to its matcher and masks every token the grammar forbids; a row whose grammar is complete may
only end. It also enforces the prose budget (``CallGrammar.max_prose_tokens``): once a row has written
that many tokens of free text, only tokens that start a tag (contain ``<``) stay allowed, so the call
must begin -- the grammar itself leaves the prose unbounded because bounded repetitions make masks slow.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from agent.backends.constrain import GrammarCompiler, Matcher

logger = logging.getLogger(__name__)

_CALL_TAG = "<tool_call>"


@dataclass
class _Row:
    """One sequence: its matcher, prose tokens left, and the last characters written."""

    matcher: Matcher | None
    prose_left: int | None
    tail: str = ""
    calling: bool = False

    def advance(self, text: str) -> None:
        self.tail = (self.tail + text)[-2 * len(_CALL_TAG):]
        if _CALL_TAG in self.tail:
            self.calling = True
        elif not self.calling and self.prose_left is not None and "<" not in text:
            self.prose_left -= 1

    def must_open_tag(self) -> bool:
        """Prose budget spent, not inside a tag already: only a tag may start."""
        inside_tag = self.tail.rfind("<") > self.tail.rfind(">")
        return not self.calling and self.prose_left is not None and self.prose_left <= 0 and not inside_tag


class ConstrainedLogits:
    """A transformers ``LogitsProcessor``: row ``i`` follows ``matchers[i]`` (None: unconstrained).

    ``prompt_len`` is the (padded) prompt length: the first call sees no generated token yet. A row whose
    matcher rejects a token (it cannot happen when every step was masked) stops being constrained and
    is logged. ``budgets[i]`` is row ``i``'s prose budget in tokens (None: unbounded).
    """

    def __init__(self, compiler: GrammarCompiler, matchers: list[Matcher | None], prompt_len: int,
                 eos_ids: list[int], budgets: list[int | None] | None = None) -> None:
        budgets = budgets or [None] * len(matchers)
        self.compiler, self.prompt_len, self.eos_ids = compiler, prompt_len, eos_ids
        self.rows = [_Row(m, b) for m, b in zip(matchers, budgets)]
        self._end_words = _only(compiler, eos_ids)
        self.mask_seconds = 0.0  # time spent in grammar work, for bench/llm.py

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        started = time.perf_counter()
        bitmask = self.compiler.allocate(scores.shape[0])
        used = False
        for index, row in enumerate(self.rows):
            if row.matcher is None:
                continue
            if input_ids.shape[1] > self.prompt_len and not self._feed(index, row, int(input_ids[index, -1])):
                continue
            if row.matcher.done():
                bitmask[index] = self._end_words
            else:
                row.matcher.fill(bitmask, index)
                if row.must_open_tag():
                    forced = bitmask[index] & self.compiler.tag_words
                    if forced.any():  # else mid-character (a multi-byte letter): finish it first
                        bitmask[index] = forced
            used = True
        if used:
            vocab = self.compiler.vocab_size
            self.compiler.apply(scores[:, :vocab] if scores.shape[1] > vocab else scores, bitmask)
        self.mask_seconds += time.perf_counter() - started
        return scores

    def _feed(self, index: int, row: _Row, token: int) -> bool:
        """Advance ``row`` by its last token; False when the row is no longer constrained."""
        matcher = row.matcher
        assert matcher is not None
        if matcher.done() or not matcher.accept(token):
            if token not in self.eos_ids and not matcher.done():
                logger.warning("grammar rejected token %d in row %d; row left unconstrained", token, index)
            row.matcher = None
            return False
        texts = self.compiler.token_texts
        row.advance(texts[token] if token < len(texts) else "")
        return True


def _only(compiler: GrammarCompiler, tokens: list[int]) -> torch.Tensor:
    """Bitmask words allowing exactly ``tokens``."""
    from agent.backends.constrain import pack

    allowed = [False] * compiler.vocab_size
    for token in tokens:
        allowed[token] = True
    return pack(allowed, compiler.vocab_size)
