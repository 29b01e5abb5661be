"""How tool calls travel between the agent and the language model.

Two protocols are supported:

``"native"``
    The tool schemas go in the request's ``tools=[...]`` field (OpenAI function schemas) and the calls
    come back in ``message.tool_calls``. On vLLM this needs the server started with
    ``--enable-auto-tool-choice --tool-call-parser <parser>``, and the parser must match the model
    family (``hermes`` for Qwen2.5-VL / Qwen3-VL, ``llama4_pythonic`` or ``llama4_json`` for Llama 4,
    ...). A wrong or missing parser gives an HTTP 400 or, worse, calls that silently stay in the text.

``"text"``
    The tool schemas are described in the system prompt (:func:`render_tools_text`) and the model
    writes one call as JSON inside ``<tool_call>...</tool_call>`` tags anywhere in its message
    (:func:`parse_text_reply`). It works with any chat template and any OpenAI-compatible endpoint,
    with no server flags.

**Default: ``"text"``** (:data:`DEFAULT_PROTOCOL`). It runs unchanged on every endpoint, behaves the
same for every model family (vLLM's auto tool-choice parsers differ per family and per version), and
when a model mangles its call the parser here repairs it or tells the model exactly how to fix it,
where a server-side parser would drop the call into plain text without a word. The tag format is the
one Qwen's chat templates (Hermes style) already train on, so Qwen models follow it readily. Use
``"native"`` when the server is known to be configured for the model (it saves the prompt tokens of
the tool description and lets the server's grammar constrain the call).

Tools are declared as :class:`ToolSpec` ``(name, description, args_model)`` where ``args_model`` is a
pydantic model of the arguments (a plain 3-tuple works too). A tool written as a typed function
declares its arguments model next to it, e.g. ``class SegmentArgs(BaseModel): text_prompt: str =
Field(description=...)`` and ``ToolSpec("segment_phrase", segment_phrase.__doc__, SegmentArgs)``.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import pydantic

from sam3_core.errors import ModelRetry, UsageError

from .lenient_json import fenced_objects, first_json_object, loads_lenient, tagged_blocks

logger = logging.getLogger(__name__)

Protocol = Literal["native", "text"]
DEFAULT_PROTOCOL: Protocol = "text"
PROTOCOLS: tuple[str, ...] = ("native", "text")

_OPEN_TAG = re.compile(r"<tool_call\s*>", re.IGNORECASE)
_CLOSE_TAG = re.compile(r"</tool_call\s*>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)


class ToolSpec(NamedTuple):
    """A tool the model may call: its name, what it does, and a pydantic model of its arguments."""

    name: str
    description: str
    args_model: type[pydantic.BaseModel]


@dataclass(frozen=True)
class ToolCall:
    """One tool call made by the model.

    ``parsed`` holds the validated arguments model once :func:`validate_call` has accepted the call.
    """

    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:16]}")
    parsed: pydantic.BaseModel | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ParsedText:
    """What :func:`parse_text_reply` found in a message.

    ``call`` is the first call outside reasoning blocks (or None), ``ignored_calls`` how many further
    calls were dropped, ``text`` the visible text with reasoning and call markup removed, and
    ``reasoning`` the content of the ``<think>`` blocks.
    """

    call: ToolCall | None
    ignored_calls: int = 0
    text: str = ""
    reasoning: str = ""


@dataclass(frozen=True)
class CallChoices:
    """What a call may contain right now, for constrained decoding (it never changes validation).

    ``tools`` names the tools that can be called in this state (None: all offered). ``values`` maps an
    argument name to the values it may take (e.g. ``{"mask_ids": (1, 2, 5)}``); an integer argument
    becomes one of them, an array argument a list of them. ``ranges`` maps an integer argument's name
    to the inclusive ``(low, high)`` it must lie in (e.g. ``{"frame_index": (0, 119)}`` for a 120-frame
    clip; for an array of integers, each item). A tool whose required argument has no allowed value
    (an empty tuple, or ``low > high``) cannot be called.
    """

    tools: tuple[str, ...] | None = None
    values: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)


# --------------------------------------------------------------------------- schemas


def as_specs(specs: Sequence[ToolSpec | tuple[str, str, type[pydantic.BaseModel]]]) -> list[ToolSpec]:
    """Normalise tool declarations (ToolSpec or plain 3-tuples) to ToolSpec, checking the models."""
    out = []
    for spec in specs:
        name, description, model = spec
        if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
            raise UsageError(f"tool {name!r}: args_model must be a pydantic BaseModel class, got {model!r}")
        out.append(ToolSpec(name, description, model))
    return out


def _strip_titles(node: Any) -> Any:
    """Drop pydantic's auto-generated ``title`` keys; keep property *names* that happen to be 'title'."""
    if isinstance(node, list):
        return [_strip_titles(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "title":
            continue
        if key in ("properties", "$defs") and isinstance(value, dict):
            out[key] = {name: _strip_titles(sub) for name, sub in value.items()}
        else:
            out[key] = _strip_titles(value)
    return out


@functools.lru_cache(maxsize=256)
def _schema_json(model: type[pydantic.BaseModel]) -> str:
    """:func:`args_schema` as JSON text, made once per model: pydantic builds the schema anew on every
    ``model_json_schema`` call (about 0.3 ms a tool), and every chat request describes its tools."""
    schema = _strip_titles(model.model_json_schema())
    schema.pop("description", None)
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return json.dumps(schema, ensure_ascii=False)


def args_schema(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The JSON schema of an arguments model, without titles and the model's own docstring (a fresh copy
    that the caller may change)."""
    return json.loads(_schema_json(model))


def to_openai_tools(specs: Sequence[ToolSpec | tuple[str, str, type[pydantic.BaseModel]]]) -> list[dict]:
    """OpenAI function schemas (``tools=[...]`` of a chat request) for the given tools."""
    return [
        {"type": "function", "function": {"name": s.name, "description": s.description, "parameters": schema}}
        for s in as_specs(specs)
        for schema in [args_schema(s.args_model)]
    ]


# --------------------------------------------------------------------------- text-mode prompt


def _example_call(specs: Sequence[ToolSpec]) -> str:
    """A one-line example call, built from the first tool's required arguments."""
    if not specs:
        return '{"name": "TOOL_NAME", "arguments": {"ARGUMENT": "VALUE"}}'
    placeholders = {"string": "...", "integer": 0, "number": 0.0, "boolean": True, "array": [], "object": {}}
    schema = args_schema(specs[0].args_model)
    args = {
        key: placeholders.get(schema["properties"].get(key, {}).get("type"), "...")
        for key in schema.get("required", [])
    }
    return json.dumps({"name": specs[0].name, "arguments": args})


def format_instructions(specs: Sequence[ToolSpec | tuple] = ()) -> str:
    """How to write a call in text mode; used in the system prompt and in every retry message."""
    specs = as_specs(specs)
    names = ", ".join(s.name for s in specs)
    lines = [
        "To call a tool, write exactly one JSON object inside <tool_call></tool_call> tags:",
        f"<tool_call>{_example_call(specs)}</tool_call>",
        'The object has exactly two keys: "name" (the tool name) and "arguments" (an object).',
        "Use strict JSON: double quotes, no comments, no trailing commas, no code fences inside the tags.",
        "Call at most one tool per message; its result comes back in <tool_response></tool_response>.",
    ]
    if names:
        lines.append(f"Available tools: {names}.")
    return "\n".join(lines)


def render_tools_text(specs: Sequence[ToolSpec | tuple[str, str, type[pydantic.BaseModel]]]) -> str:
    """Describe the tools for the system prompt in text mode: name, description, argument schema."""
    return _tools_text(tuple(as_specs(specs)))


@functools.lru_cache(maxsize=64)
def _tools_text(specs: tuple[ToolSpec, ...]) -> str:
    """:func:`render_tools_text`, made once per tool set (every text-mode request carries it)."""
    parts = ["# Tools", "", "You can call the following tools. Arguments follow each tool's JSON schema.", ""]
    for spec in specs:
        parts += [f"## {spec.name}", spec.description.strip(), "Arguments schema:"]
        parts += [_schema_json(spec.args_model), ""]
    parts += ["# How to call a tool", "", format_instructions(specs)]
    return "\n".join(parts)


def tool_result_messages(
    content: str | list[dict], protocol: Protocol, call: ToolCall | None = None
) -> list[dict]:
    """Chat messages that report a tool result (or a ModelRetry message) back to the model.

    ``content`` is a string or a list of OpenAI content parts (text and ``image_url``). In native mode
    with a ``call`` the text goes into a ``role="tool"`` message (images follow in a user message,
    since tool messages carry text only); in text mode it is a user message wrapped in
    ``<tool_response>`` tags. Without a call (the reply could not be parsed) it is a plain user message.
    """
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    texts = "\n".join(p["text"] for p in parts if p.get("type") == "text")
    images = [p for p in parts if p.get("type") != "text"]
    if call is None:
        return [{"role": "user", "content": parts if images else texts}]
    if protocol == "native":
        messages = [{"role": "tool", "tool_call_id": call.id, "content": texts}]
        if images:
            messages.append({"role": "user", "content": images})
        return messages
    wrapped = [{"type": "text", "text": f"<tool_response>\n{texts}\n</tool_response>"}, *images]
    return [{"role": "user", "content": wrapped if images else wrapped[0]["text"]}]


# --------------------------------------------------------------------------- text-mode parsing


def split_reasoning(text: str) -> tuple[str, str]:
    """Separate ``<think>`` blocks from the visible text; returns (visible, reasoning).

    Handles a closing ``</think>`` whose opening tag was part of the prompt (Qwen3 thinking
    templates) and an unclosed ``<think>`` (truncated output: the rest is reasoning).
    """
    reasoning = []
    lower = text.lower()
    first_open, first_close = lower.find("<think>"), lower.find("</think>")
    if first_close >= 0 and (first_open < 0 or first_close < first_open):
        reasoning.append(text[:first_close])
        text = text[first_close + len("</think>") :]
    blocks, text = tagged_blocks(text, _THINK_OPEN, _THINK_CLOSE)  # linear: replies are hostile input
    reasoning += blocks
    dangling = text.lower().find("<think>")
    if dangling >= 0:
        reasoning.append(text[dangling + len("<think>") :])
        text = text[:dangling]
    return text.strip(), "\n".join(r.strip() for r in reasoning).strip()


def _tool_call_bodies(text: str) -> tuple[list[str], str]:
    """The bodies of all ``<tool_call>`` blocks (closing tag optional) and the text outside them."""
    opens = list(_OPEN_TAG.finditer(text))
    if not opens:
        close = _CLOSE_TAG.search(text)
        if close is None:
            return [], text
        return [text[: close.start()]], text[close.end() :]
    bodies, outside = [], [text[: opens[0].start()]]
    for k, match in enumerate(opens):
        limit = opens[k + 1].start() if k + 1 < len(opens) else len(text)
        close = _CLOSE_TAG.search(text, match.end(), limit)
        bodies.append(text[match.end() : close.start() if close else limit])
        if close:
            outside.append(text[close.end() : limit])
    return [b for b in bodies if b.strip()], "".join(outside)


def retry_error(reason: str, specs: Sequence[ToolSpec | tuple] = ()) -> ModelRetry:
    """A :class:`ModelRetry` whose message states the problem and the exact call format."""
    return ModelRetry(f"Your tool call could not be read: {reason}\n{format_instructions(specs)}")


def call_from_object(obj: Any, specs: Sequence[ToolSpec | tuple] = ()) -> ToolCall:
    """Turn a decoded ``{"name": ..., "arguments": ...}`` object into a :class:`ToolCall`.

    Accepts ``parameters`` / ``args`` for ``arguments``, arguments given as a JSON string, and an
    OpenAI-style ``{"function": {...}}`` wrapper.
    """
    if isinstance(obj, dict) and isinstance(obj.get("function"), dict):
        obj = obj["function"]
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"].strip():
        raise retry_error('the JSON object has no "name" string.', specs)
    args = next((obj[k] for k in ("arguments", "parameters", "args") if k in obj), {})
    if isinstance(args, str):
        try:
            args = loads_lenient(args) if args.strip() else {}
        except ValueError as exc:
            raise retry_error(f'"arguments" is a string that is not valid JSON ({exc}).', specs) from exc
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise retry_error(f'"arguments" must be a JSON object, got {type(args).__name__}.', specs)
    return ToolCall(name=obj["name"].strip(), arguments=args)


def _parse_body(body: str, specs: Sequence[ToolSpec | tuple]) -> ToolCall:
    """Decode the call in one ``<tool_call>`` body (closing up to 3 braces the model forgot)."""
    snippet = first_json_object(body)
    if snippet is None and "{" in body:
        tail = body[body.find("{") :].strip().removesuffix("```").rstrip()
        snippet = next((tail + "}" * n for n in (1, 2, 3) if first_json_object(tail + "}" * n)), None)
    if snippet is None:
        shown = body.strip()[:200]
        raise retry_error(f"no complete JSON object inside <tool_call> (found {shown!r}).", specs)
    try:
        obj = loads_lenient(snippet)
    except ValueError as exc:
        raise retry_error(f"invalid JSON inside <tool_call>: {exc}.", specs) from exc
    return call_from_object(obj, specs)


def _untagged_call(text: str, specs: Sequence[ToolSpec | tuple]) -> tuple[ToolCall | None, str]:
    """A call written without tags: the whole message, or a fenced block, being one call object.

    Only objects with ``name`` and ``arguments``/``parameters`` count, and when ``specs`` are given
    the name must be one of them, so JSON in an ordinary answer is not mistaken for a call.
    """
    names = {s.name for s in as_specs(specs)}
    stripped = text.strip()
    whole = stripped.startswith("{") and stripped.endswith("}")
    candidates = [(stripped, stripped)] if whole else []
    candidates += fenced_objects(text)
    for span, candidate in candidates:
        try:
            obj = loads_lenient(candidate)
        except ValueError:
            continue
        if not (isinstance(obj, dict) and isinstance(obj.get("name"), str)):
            continue
        if {"arguments", "parameters"} & obj.keys() and (not names or obj["name"] in names):
            return call_from_object(obj, specs), text.replace(span, "", 1).strip()
    return None, text


def parse_text_reply(content: str | None, specs: Sequence[ToolSpec | tuple] = ()) -> ParsedText:
    """Find the tool call in a text-protocol message.

    Calls inside ``<think>`` blocks are ignored. The first ``<tool_call>`` is used and any further
    ones are counted in ``ignored_calls``. A call object written without tags (the whole message or
    a fenced block) is accepted too. No call at all gives ``call=None``. A call that cannot be decoded raises
    :class:`ModelRetry` with formatting instructions (naming ``specs``' tools when given).
    """
    visible, reasoning = split_reasoning(content or "")
    bodies, outside = _tool_call_bodies(visible)
    if not bodies:
        call, visible = _untagged_call(visible, specs)
        return ParsedText(call=call, text=visible, reasoning=reasoning)
    call = _parse_body(bodies[0], specs)
    return ParsedText(call=call, ignored_calls=len(bodies) - 1, text=outside.strip(), reasoning=reasoning)


# --------------------------------------------------------------------------- validation


def _describe_errors(exc: pydantic.ValidationError) -> str:
    items = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(arguments)"
        item = f"field '{where}': {err['msg']}"
        if err["type"] != "missing":
            item += f" (got {json.dumps(err.get('input'), default=str)[:80]})"
        items.append(item)
    return "; ".join(items)


def validate_call(call: ToolCall, specs: Sequence[ToolSpec | tuple]) -> ToolCall:
    """Check the call names a known tool and its arguments fit the schema; returns it with ``parsed`` set.

    Raises :class:`ModelRetry` naming the unknown tool or each bad field and the expected schema.
    """
    specs = as_specs(specs)
    by_name = {s.name: s for s in specs}
    spec = by_name.get(call.name)
    if spec is None:
        raise ModelRetry(f"Unknown tool {call.name!r}. Available tools: {', '.join(by_name) or '(none)'}.")
    try:
        parsed = spec.args_model.model_validate(call.arguments)
    except pydantic.ValidationError as exc:
        schema = _schema_json(spec.args_model)
        raise ModelRetry(
            f"Invalid arguments for tool {call.name!r}: {_describe_errors(exc)}. "
            f"Call it again with arguments matching this schema: {schema}"
        ) from exc
    return ToolCall(name=call.name, arguments=call.arguments, id=call.id, parsed=parsed)
