"""Grammars for constrained tool calls, built from the tools' own argument schemas.

A constrained reply is: free text (reasoning; optionally in one ``<think>...</think>`` block first, whose
opening tag may already be in the prompt), then
exactly one ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, then the end of the message.
The call object is described by one JSON schema (:func:`call_schema`): ``anyOf`` over the tools offered,
each with ``name`` fixed and ``arguments`` from the tool's pydantic model, narrowed by
:class:`~agent.tool_protocol.CallChoices` (the tools callable now, ids restricted to the masks that exist,
a video's frame indices to its frames as integer ``minimum``/``maximum``, which both libraries and the
EBNF sent to a vLLM server turn into digit rules).

Two grammar libraries are supported, both used by vLLM: **xgrammar** (vLLM's default; its EBNF, as
text, is also what is sent to a vLLM server) and **llguidance** (a Lark grammar with an embedded JSON
schema). :data:`DEFAULT_LIBRARY` is the one ``bench/llm.py`` measured faster here (see its output).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agent import tool_protocol as tp
from sam3_core.errors import UsageError

Library = Literal["xgrammar", "llguidance"]
LIBRARIES: tuple[str, ...] = ("xgrammar", "llguidance")
DEFAULT_LIBRARY: Library = "xgrammar"

#: Longest string argument a constrained call may contain (a noun phrase never needs more).
MAX_STRING_CHARS = 64
# First character of a string argument: not blank and not something normalise_phrase strips.
_STRING_PATTERN = r"^[^\s.,;:\"'`\\<>{}][^\"\\<>{}\n]{0,N}$".replace("N", str(MAX_STRING_CHARS - 1))


@dataclass(frozen=True)
class CallGrammar:
    """What a constrained reply may be: the call's JSON schema, and how much free text may precede it.

    The grammar itself leaves the free text unbounded: a bounded repetition (``[^<]{0,N}``) makes
    grammar masks orders of magnitude slower to compute (bench/llm.py). ``max_prose_tokens`` is
    enforced by the in-process token masking instead (past it, only the start of a tag may follow);
    a server bounds the reply by ``max_tokens`` only.
    """

    schema: dict[str, Any]
    max_prose_tokens: int | None = 1024

    def __post_init__(self) -> None:
        if self.max_prose_tokens is not None and self.max_prose_tokens < 0:
            raise UsageError(f"max_prose_tokens must be >= 0 or None, got {self.max_prose_tokens}")

    def ebnf(self) -> str:
        """The grammar as xgrammar EBNF text (what a vLLM server's ``structured_outputs.grammar`` takes)."""
        return str(self.xgrammar())

    def xgrammar(self):  # -> xgrammar.Grammar
        """The grammar as an ``xgrammar.Grammar``."""
        import xgrammar as xgr

        # "<think>" may also be in the prompt already (thinking templates): then only "</think>" is written
        prose = 'root ::= "<think>"? [^<]* ("</think>" [^<]*)? "<tool_call>" [ \\n]?'
        call = xgr.Grammar.from_json_schema(json.dumps(self.schema), any_whitespace=False, strict_mode=True)
        close = xgr.Grammar.from_ebnf('root ::= [ \\n]? "</tool_call>"')
        return xgr.Grammar.concat(xgr.Grammar.from_ebnf(prose), call, close)

    def lark(self, markup_tokens: frozenset[str] = frozenset()) -> str:
        """The grammar as llguidance Lark text (with the JSON schema embedded).

        ``markup_tokens``: markup strings (``<tool_call>``, ``<think>`` ...) that are single added tokens
        of the tokenizer; llguidance sees those as special tokens, so they are referenced as tokens.
        """
        def tag(text: str) -> str:
            return text if text in markup_tokens else json.dumps(text)

        lines = [
            f"start: {tag('<think>')}? prose ({tag('</think>')} prose)? {tag('<tool_call>')} NL? call NL? "
            f"{tag('</tool_call>')}",
            "prose: /[^<]*/",
            "NL: /[ \\n]/",
            "call: %json " + json.dumps(self.schema),
        ]
        return "\n".join(lines)


def _narrow(node: dict[str, Any], values: Sequence[Any]) -> dict[str, Any]:
    """``node`` (an integer or array-of-integers schema) restricted to ``values``."""
    if node.get("type") == "array":
        items = {"enum": list(values)}
        out = {k: v for k, v in node.items() if k not in ("items", "maxItems")}
        return {**out, "items": items, "maxItems": max(1, len(values))}
    return {**{k: v for k, v in node.items() if k not in ("minimum", "maximum")}, "enum": list(values)}


def _within(node: dict[str, Any], low: int, high: int) -> dict[str, Any]:
    """``node`` (an integer or array-of-integers schema) restricted to ``low..high`` (inclusive), intersected
    with the bounds it already has."""
    if node.get("type") == "array":
        return {**node, "items": _within(dict(node.get("items", {"type": "integer"})), low, high)}
    low = max(low, node.get("minimum", low))
    high = min(high, node.get("maximum", high))
    if "enum" in node:  # already narrowed to values: keep those in range
        return {**node, "enum": [v for v in node["enum"] if low <= v <= high]}
    return {**node, "minimum": low, "maximum": high}


def _empty(node: dict[str, Any]) -> bool:
    """Whether no integer satisfies ``node`` (an empty enum, or minimum above maximum)."""
    return node.get("enum") == [] or node.get("minimum", 0) > node.get("maximum", node.get("minimum", 0))


def _bound_strings(node: Any) -> Any:
    """Give every unbounded string schema a length limit and a non-blank first character."""
    if isinstance(node, list):
        return [_bound_strings(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _bound_strings(v) for k, v in node.items()}
    if out.get("type") == "string" and "enum" not in out and "const" not in out:
        out.setdefault("pattern", _STRING_PATTERN)
        out["maxLength"] = min(out.get("maxLength", MAX_STRING_CHARS), MAX_STRING_CHARS)
        out.setdefault("minLength", 1)
    return out


def _arguments_schema(spec: tp.ToolSpec, choices: tp.CallChoices) -> dict[str, Any] | None:
    """One tool's narrowed arguments schema, or None when no call to it could be valid now."""
    schema = copy.deepcopy(tp.args_schema(spec.args_model))
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    for name, values in choices.values.items():
        if name in props:
            if not values and (name in required or props[name].get("minItems", 0) > 0):
                return None
            props[name] = _narrow(props[name], values)
    for name, (low, high) in choices.ranges.items():
        if name in props:
            props[name] = _within(props[name], int(low), int(high))
            item = props[name].get("items", {}) if props[name].get("type") == "array" else props[name]
            if _empty(item) and (name in required or props[name].get("minItems", 0) > 0):
                return None
    schema["additionalProperties"] = False
    return _bound_strings(schema)


def call_schema(specs: Sequence[tp.ToolSpec | tuple], choices: tp.CallChoices | None = None) -> dict[str, Any]:
    """The JSON schema of one valid call object ``{"name": ..., "arguments": {...}}``.

    Raises UsageError when no tool can be called (every tool excluded by ``choices``).
    """
    choices = choices or tp.CallChoices()
    options = []
    for spec in tp.as_specs(specs):
        if choices.tools is not None and spec.name not in choices.tools:
            continue
        arguments = _arguments_schema(spec, choices)
        if arguments is None:
            continue
        options.append({
            "type": "object",
            "properties": {"name": {"const": spec.name}, "arguments": arguments},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        })
    if not options:
        raise UsageError("no tool can be called under these choices; nothing to constrain the reply to")
    return options[0] if len(options) == 1 else {"anyOf": options}
