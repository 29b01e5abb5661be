"""Reading the almost-JSON that language models write: code fences, single quotes, trailing commas,
Python literals (``True``/``None``) and bare keys are repaired before ``json.loads``."""

from __future__ import annotations

import json
import logging
import re
from types import MappingProxyType
from typing import Any

logger = logging.getLogger(__name__)

_FENCE = re.compile(r"^```[a-zA-Z]*\s*(.*?)\s*```$", re.DOTALL)
_ESCAPES = MappingProxyType(
    {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\", '"': '"', "'": "'"}
)
_PY_LITERALS = MappingProxyType({"True": "true", "False": "false", "None": "null"})


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
    """Rewrite near-JSON into JSON: single-quoted strings, trailing commas, Python literals, bare keys."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch in "\"'":
            value, i = _read_string(text, i)
            out.append(json.dumps(value, ensure_ascii=False))
            continue
        if ch == ",":
            rest = text[i + 1 :].lstrip()
            if rest[:1] in ("}", "]"):
                i += 1
                continue
        if ch.isalpha() or ch == "_":
            word = re.match(r"\w+", text[i:]).group(0)
            i += len(word)
            if word in _PY_LITERALS:
                out.append(_PY_LITERALS[word])
            elif text[i:].lstrip().startswith(":"):
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
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        return json.loads(text)
    except ValueError:
        repaired = _repair_json(text)
    logger.debug("repaired near-JSON %r -> %r", text[:200], repaired[:200])
    return json.loads(repaired)
