"""One assistant turn of the LLM as :class:`LLMReply`: the completion's first choice parsed with either tool-call
protocol (:mod:`agent.tool_protocol`), the call validated, and the message to keep in the history.

:func:`build_reply` runs off the event loop (see :mod:`agent.reply_limits`); :func:`with_tools_text` puts the
text-mode tool description into a request. :mod:`agent.llm` re-exports :class:`LLMReply`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent import tool_protocol as tp
from agent.llm_usage import Usage
from sam3_core.errors import ModelRetry

# The client's logger: one name ("agent.llm") tunes every message about LLM replies.
logger = logging.getLogger("agent.llm")


@dataclass
class LLMReply:
    """One assistant turn.

    ``message`` is the assistant message to append to the history as is. ``text`` is the visible
    text (reasoning and call markup removed), ``content`` the raw content. ``tool_calls`` holds at
    most one call (later ones are counted in ``ignored_calls``). ``tool_error`` is set when the call
    could not be parsed or validated: show it to the model (see
    :func:`agent.tool_protocol.tool_result_messages`) and let it try again.
    """

    text: str
    content: str
    tool_calls: list[tp.ToolCall]
    message: dict[str, Any]
    usage: Usage
    finish_reason: str | None = None
    reasoning: str = ""
    ignored_calls: int = 0
    tool_error: ModelRetry | None = None
    latency_s: float = 0.0

    @property
    def tool_call(self) -> tp.ToolCall | None:
        """The call to execute, or None."""
        return self.tool_calls[0] if self.tool_calls else None


def _history_entry(call: tp.ToolCall) -> dict[str, Any]:
    """The ``tool_calls`` entry of an assistant message (arguments re-serialised as valid JSON)."""
    function = {"name": call.name, "arguments": json.dumps(call.arguments)}
    return {"id": call.id, "type": "function", "function": function}


def _native_call(raw: Any) -> tuple[tp.ToolCall, ModelRetry | None]:
    """Decode one entry of ``message.tool_calls``; bad arguments give an empty call and the error."""
    name, arguments = raw.function.name or "", raw.function.arguments or "{}"
    try:
        call = tp.call_from_object({"name": name, "arguments": arguments})
    except ModelRetry:
        error = ModelRetry(
            f"The arguments of your call to {name!r} are not a JSON object: {arguments[:200]!r}. "
            "Call the tool again with its arguments as one valid JSON object."
        )
        return tp.ToolCall(name=name, arguments={}, id=raw.id or f"call_{id(raw):x}"), error
    return tp.ToolCall(name=call.name, arguments=call.arguments, id=raw.id or call.id), None


def build_reply(choice: Any, protocol: tp.Protocol, specs: Sequence[tp.ToolSpec]) -> LLMReply:
    """Turn the first choice of a completion into an :class:`LLMReply` (usage filled in by the caller).

    In native mode a reply without ``tool_calls`` is still searched for a text-protocol call: when
    the server's parser misses a call, it arrives as plain content.
    """
    message = choice.message
    content = message.content or ""
    native = [c for c in (message.tool_calls or []) if getattr(c, "function", None) is not None]
    visible, reasoning = tp.split_reasoning(content)
    calls: list[tp.ToolCall] = []
    error: ModelRetry | None = None
    ignored = 0
    if protocol == "native" and native:
        call, error = _native_call(native[0])
        calls, ignored = [call], len(native) - 1
    else:
        try:
            parsed = tp.parse_text_reply(content, specs)
            visible, ignored = parsed.text, parsed.ignored_calls
            calls = [parsed.call] if parsed.call else []
        except ModelRetry as exc:
            error = exc
    if ignored:
        logger.warning("model made %d tool calls; using the first (%s)", ignored + 1, calls[0].name)
    if calls and error is None and specs:
        try:
            calls = [tp.validate_call(calls[0], specs)]
        except ModelRetry as exc:
            error = exc
    history: dict[str, Any] = {"role": "assistant", "content": content}
    if protocol == "native" and calls:
        history["tool_calls"] = [_history_entry(calls[0])]
        if not native:  # the call was written as text: keep only the prose around it
            history["content"] = visible
    server_reasoning = getattr(message, "reasoning_content", None) or getattr(message, "reasoning", None)
    return LLMReply(
        text=visible,
        content=content,
        tool_calls=calls,
        message=history,
        usage=Usage(calls=1),
        finish_reason=choice.finish_reason,
        reasoning="\n".join(r for r in (server_reasoning or "", reasoning) if r),
        ignored_calls=ignored,
        tool_error=error,
    )


def with_tools_text(messages: Sequence[dict], specs: Sequence[tp.ToolSpec]) -> list[dict]:
    """A copy of ``messages`` whose system message ends with the text-mode tool description."""
    tools_text = tp.render_tools_text(specs)
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system":
        system = out[0]["content"]
        if isinstance(system, str):
            out[0]["content"] = f"{system}\n\n{tools_text}" if system else tools_text
        else:
            out[0]["content"] = [*system, {"type": "text", "text": tools_text}]
    else:
        out.insert(0, {"role": "system", "content": tools_text})
    return out


