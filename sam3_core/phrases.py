"""Checking the noun phrases callers send to SAM 3, shared by the image and video engines."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import PromptError

#: SAM 3's text encoder takes at most this many tokens (start and end tokens included).
MAX_TEXT_TOKENS = 32


def clean_phrases(phrases: str | Sequence[str] | None) -> list[str]:
    """Phrases with whitespace collapsed; :class:`PromptError` for none, a non-string or an empty one."""
    if isinstance(phrases, str):
        phrases = [phrases]
    if not phrases:
        raise PromptError("no phrases given: pass at least one noun phrase")
    texts = []
    for phrase in phrases:
        if not isinstance(phrase, str):
            raise PromptError(f"phrases must be strings, got {type(phrase).__name__}")
        text = " ".join(phrase.split())
        if not text:
            raise PromptError("a phrase is empty; every phrase needs at least one word")
        texts.append(text)
    return texts
