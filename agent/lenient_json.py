"""Reading the almost-JSON that language models write: code fences, single quotes, trailing commas,
Python literals (``True``/``None``) and bare keys are repaired before ``json.loads``.

Model output is hostile input: the repair is one linear pass, text over :data:`MAX_REPAIR_CHARS` is not
repaired at all, and nesting too deep for ``json.loads`` is an ordinary ``ValueError``.
"""

from __future__ import annotations

import json
import logging
import re
from types import MappingProxyType
from typing import Any

logger = logging.getLogger(__name__)

_LANG = re.compile(r"```[a-zA-Z]*")
_FENCED_OBJECT = re.compile(r"```[a-zA-Z]*\s*(\{.*?\})\s*```", re.DOTALL)
#: Most fenced blocks :func:`fenced_objects` looks at (each look may read to the end of the text).
MAX_FENCES = 16
_ESCAPES = MappingProxyType(
    {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\", '"': '"', "'": "'"}
)
_PY_LITERALS = MappingProxyType({"True": "true", "False": "false", "None": "null"})
_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s*")
#: Longest text :func:`loads_lenient` repairs; longer text must be strict JSON (model replies are bounded far
#: below this by ``LLMConfig.max_reply_bytes``; this bounds other callers).
MAX_REPAIR_CHARS = 1_000_000


def _read_string(text: str, start: int) -> tuple[str, int]:
    """Decode the quoted string starting at ``start`` (either quote kind); return (value, end index)."""
    quote, chars, i = text[start], [], start + 1
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return "".join(chars), i + 1
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2 : i + 6]):
                chars.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            chars.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        chars.append(ch)
        i += 1
    raise ValueError("unterminated string")


def _repair_json(text: str) -> str:
    """Rewrite near-JSON into JSON: single-quoted strings, trailing commas, Python literals, bare keys.

    One pass with indices (patterns matched in place, never on a copy of the rest): linear in ``len(text)``.
    """
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'":
            value, i = _read_string(text, i)
            out.append(json.dumps(value, ensure_ascii=False))
            continue
        if ch == ",":
            after = _SPACE.match(text, i + 1).end()
            if after < n and text[after] in "}]":
                i += 1
                continue
        if ch.isalpha() or ch == "_":
            word = _WORD.match(text, i).group(0)
            i += len(word)
            if word in _PY_LITERALS:
                out.append(_PY_LITERALS[word])
            elif text.startswith(":", _SPACE.match(text, i).end()):
                out.append(json.dumps(word))
            else:
                out.append(word)
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def first_json_object(text: str) -> str | None:
    """The first balanced ``{...}`` in ``text`` (aware of both quote kinds), or None."""
    start = text.find("{")
    if start < 0:
        return None
    depth, quote, escaped = 0, None, False
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None


def loads_lenient(text: str) -> Any:
    """``json.loads`` that also accepts code fences, single quotes, trailing commas, Python literals."""
    text = unfenced(text.strip())
    try:
        return _loads(text)
    except ValueError:
        if len(text) > MAX_REPAIR_CHARS:
            raise ValueError(f"text of {len(text)} characters is not valid JSON (longer than {MAX_REPAIR_CHARS} "
                             "characters is not repaired)") from None
        repaired = _repair_json(text)
    logger.debug("repaired near-JSON %r -> %r", text[:200], repaired[:200])
    return _loads(repaired)


def _loads(text: str) -> Any:
    """``json.loads`` whose too-deep nesting is a ValueError like any other bad JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def unfenced(text: str) -> str:
    """``text`` without a code fence around all of it (```` ```json ... ``` ````), stripped; linear time."""
    if len(text) >= 6 and text.startswith("```") and text.endswith("```"):
        return text[_LANG.match(text).end() : -3].strip()
    return text


def tagged_blocks(text: str, opening: re.Pattern[str], closing: re.Pattern[str]) -> tuple[list[str], str]:
    """The insides of the ``opening ... closing`` blocks of ``text`` (shortest match, left to right) and the text
    without those blocks: what ``re.findall``/``re.sub`` of ``opening(.*?)closing`` give, in linear time."""
    blocks, kept, pos = [], [], 0
    while (start := opening.search(text, pos)) is not None:
        end = closing.search(text, start.end())
        if end is None:  # no closing tag after this opening, so none after any later one either
            break
        kept.append(text[pos : start.start()])
        blocks.append(text[start.end() : end.start()])
        pos = end.end()
    kept.append(text[pos:])
    return blocks, "".join(kept)


def fenced_objects(text: str) -> list[tuple[str, str]]:
    """``(block, object text)`` of each code fence holding one ``{...}`` object, for the first
    :data:`MAX_FENCES` fences: each candidate is matched in place, so a reply of many fences stays cheap."""
    found, pos = [], 0
    for _ in range(MAX_FENCES):
        start = text.find("```", pos)
        if start < 0:
            break
        match = _FENCED_OBJECT.match(text, start)
        if match is None:
            pos = start + 3
            continue
        found.append((match.group(0), match.group(1)))
        pos = match.end()
    return found
