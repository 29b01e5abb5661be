"""The pruned conversation of the agent loop and the state updates that grow it, for every medium.

:func:`build_messages` builds the messages of each main-loop call: the medium's opening (system prompt,
query, raw image or frames), then -- once a pruning tool (``search`` or ``refine``) has run -- only the
latest such exchange (the **anchor**) with fresh images of the current candidates, then the text-only
turns since. Older phrases, overlays and retries are dropped.

:func:`model_error` answers a model mistake with a retry message, or ends the query as ``failed`` past
``AgentSettings.max_retries``; :func:`tool_applied` records a tool that ran.
"""

from __future__ import annotations

import logging
from typing import Any

from agent import tool_protocol as tp
from agent.context import RunContext
from agent.state import INVALID_REPLIES, Anchor, State
from tools.registry import ToolOutcome

logger = logging.getLogger(__name__)


def build_messages(state: State, ctx: RunContext) -> list[dict[str, Any]]:
    """The pruned conversation for the next main-loop call (see the module docstring).

    The medium gives the opening (system prompt, query and raw input) and the candidates' images; the
    anchor exchange and the turns since it are the same for every medium.
    """
    media = ctx.media
    protocol = ctx.llm.config.tool_protocol
    messages = media.opening(state, ctx)
    parts = media.result_parts(state, ctx)
    if state.anchor is not None:
        anchor = state.anchor
        call = tp.ToolCall(anchor["call"]["name"], anchor["call"]["arguments"], anchor["call"]["id"])
        content = [{"type": "text", "text": anchor["text"]}, *parts]
        messages += [anchor["message"], *tp.tool_result_messages(content, protocol, call)]
    elif parts:
        messages.append({"role": "user", "content": [{"type": "text", "text": media.earlier_text(state)}, *parts]})
    return [*messages, *state.messages]


def no_call_message(ctx: RunContext, tool_specs: list[tp.ToolSpec]) -> str:
    """The retry message for a reply that made no tool call."""
    names = ", ".join(s.name for s in tool_specs)
    text = f"Your reply did not call a tool. Every reply must call exactly one tool ({names})."
    if ctx.llm.config.tool_protocol == "text":
        text += "\n" + tp.format_instructions(tool_specs)
    return text


def model_error(state: State, ctx: RunContext, problem: str, message: dict[str, Any],
                call: tp.ToolCall | None) -> dict[str, Any]:
    """State update for a model mistake: a retry message, or status ``failed`` past ``max_retries``."""
    errors = state.consecutive_errors + 1
    reply = tp.tool_result_messages(problem, ctx.llm.config.tool_protocol, call)
    update: dict[str, Any] = {
        "consecutive_errors": errors,
        "pending_call": None,
        "messages": [*state.messages, message, *reply],
    }
    if errors > ctx.settings.max_retries:
        logger.warning("giving up after %d invalid replies in a row: %s", errors, problem)
        update["status"] = "failed"
        update["cause"] = INVALID_REPLIES
        update["error"] = (
            f"the model made {errors} invalid replies or tool calls in a row "
            f"(max_retries={ctx.settings.max_retries}); the last problem: {problem}"
        )
    else:
        logger.info("model mistake %d/%d, asking again: %s", errors, ctx.settings.max_retries, problem[:200])
    return update


def tool_applied(state: State, ctx: RunContext, outcome: ToolOutcome, call: tp.ToolCall) -> dict[str, Any]:
    """The state update of a tool that ran: its own update plus the conversation (pruned or appended)."""
    pending = state.pending_call
    assert pending is not None
    update: dict[str, Any] = {**outcome.update, "pending_call": None, "consecutive_errors": 0}
    if outcome.prune:
        call_info = {"name": call.name, "arguments": call.arguments, "id": call.id}
        update["anchor"] = Anchor(message=pending["message"], call=call_info, text=outcome.text)
        update["messages"] = []
    else:
        result = tp.tool_result_messages(outcome.text, ctx.llm.config.tool_protocol, call)
        update["messages"] = [*state.messages, pending["message"], *result]
    return update
