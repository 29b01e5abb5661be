"""The agent loop as a LangGraph ``StateGraph``.

Nodes::

    START -> call_model -+-> run_tool ------+--> call_model ...
                         +-> verify_masks --+
                         +-> call_model          (an invalid reply: retry message, ask again)
                         +-> finish -> END       (answered, no mask, budget used up, failed)

:func:`route` picks the next node from the state after every node except ``finish``.

``call_model`` builds a **pruned** conversation each time (:func:`build_messages`): the system prompt,
the raw image with the query, then -- once ``segment_phrase`` has run -- only the latest
``segment_phrase`` exchange with a fresh overlay of all current candidate masks (the tool result lists
the phrases tried), then the text-only turns since. Older phrases, overlays and retries are dropped.

Model mistakes never raise: an unreadable reply, a reply without a tool call, or a tool raising
:class:`~sam3_core.errors.ModelRetry` is answered with the retry message as the tool result, up to
``AgentSettings.max_retries`` times in a row; one more ends the query with status ``failed``. When
``max_steps`` replies have been used the query ends with status ``budget_exhausted`` (no exception:
the caller gets the status, see :class:`agent.runner.AgentAnswer`). LLM endpoint failures
(:class:`~sam3_core.errors.RunFailed`) propagate.

The graph is compiled with a checkpointer (an ``InMemorySaver`` unless one is given), so a thread can
be continued: invoke it again with the same ``thread_id`` and :func:`agent.state.new_query`, and the
masks found so far keep their ids. The run context (:class:`agent.state.Context`) goes in through
LangGraph's ``context=`` argument.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from agent import tool_protocol as tp
from agent.overlays import render_masks
from agent.state import AgentSettings, Anchor, Context, PendingCall, State, decode_masks
from prompts import render_prompt
from sam3_core.errors import ModelRetry, UsageError
from tools.registry import ToolEnv, by_name, specs
from tools.segmentation import examine_each_mask, format_ids, tools_for

logger = logging.getLogger(__name__)

NodeName = Literal["call_model", "run_tool", "verify_masks", "finish"]


# ----------------------------------------------------------------------------------- the conversation


def _tool_instructions(ctx: Context) -> str:
    """The system prompt's closing lines: budgets and, in native mode, how calls are made."""
    s = ctx.settings
    lines = [f"You have at most {s.max_steps} replies and {s.max_phrases} different phrases for this query."]
    if not s.verification:
        lines.append("`examine_each_mask` is not available in this run.")
    if ctx.llm.config.tool_protocol == "native":
        lines.append("Call tools through the function-calling interface, one call per reply.")
    return "\n".join(lines)


def _overlay_part(state: State, ctx: Context) -> dict[str, Any] | None:
    """An image part with all current candidate masks, numbered by id; None when there are none."""
    candidates = state.candidates()
    if not candidates:
        return None
    masks = decode_masks(candidates, ctx.image.size_hw)
    return ctx.image_part(render_masks(ctx.image.pixels, masks, [m["id"] for m in candidates]))


def _earlier_masks_text(state: State) -> str:
    """Tells the model about masks kept from earlier queries on the thread."""
    listed = ", ".join(f'{m["id"]} ("{m["phrase"]}")' for m in state.candidates())
    return (
        "Masks found for earlier queries on this image are still available; the attached overlay shows "
        f"them with their ids: {listed}. If some of them match the query, you may select them directly; "
        "otherwise call segment_phrase."
    )


def build_messages(state: State, ctx: Context) -> list[dict[str, Any]]:
    """The pruned conversation for the next main-loop call (see the module docstring)."""
    protocol = ctx.llm.config.tool_protocol
    query_part = {"type": "text", "text": render_prompt("user_query", query=state.query)}
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": render_prompt("system", tool_instructions=_tool_instructions(ctx))},
        {"role": "user", "content": [query_part, ctx.image_part(ctx.image.pixels)]},
    ]
    overlay = _overlay_part(state, ctx)
    if state.anchor is not None:
        anchor = state.anchor
        call = tp.ToolCall(anchor["call"]["name"], anchor["call"]["arguments"], anchor["call"]["id"])
        content = [{"type": "text", "text": anchor["text"]}, *([overlay] if overlay else [])]
        messages += [anchor["message"], *tp.tool_result_messages(content, protocol, call)]
    elif overlay is not None:
        messages.append({"role": "user", "content": [{"type": "text", "text": _earlier_masks_text(state)}, overlay]})
    return [*messages, *state.messages]


def _no_call_message(ctx: Context, tool_specs: list[tp.ToolSpec]) -> str:
    """The retry message for a reply that made no tool call."""
    names = ", ".join(s.name for s in tool_specs)
    text = f"Your reply did not call a tool. Every reply must call exactly one tool ({names})."
    if ctx.llm.config.tool_protocol == "text":
        text += "\n" + tp.format_instructions(tool_specs)
    return text


def _model_error(state: State, ctx: Context, problem: str, message: dict[str, Any],
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
        update["error"] = (
            f"the model made {errors} invalid replies or tool calls in a row "
            f"(max_retries={ctx.settings.max_retries}); the last problem: {problem}"
        )
    else:
        logger.info("model mistake %d/%d, asking again: %s", errors, ctx.settings.max_retries, problem[:200])
    return update


# ----------------------------------------------------------------------------------- nodes


async def call_model(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Ask the LLM for its next tool call (or end the query when the step budget is used up)."""
    ctx = runtime.context
    if state.image_key != ctx.image.key:
        raise UsageError("the run context's image is not the image of this thread (image keys differ)")
    if state.step >= ctx.settings.max_steps:
        logger.warning("step budget used up (%d replies) without an answer", state.step)
        return {"status": "budget_exhausted",
                "error": f"no answer after {state.step} model replies (max_steps={ctx.settings.max_steps})"}
    tool_specs = specs(tools_for(ctx.settings))
    reply = await ctx.llm.chat(build_messages(state, ctx), tool_specs)
    call = reply.tool_call
    logger.info("step %d: %s", state.step + 1, f"{call.name}({call.arguments})" if call else "no tool call")
    if reply.tool_error is None and call is not None:
        pending = PendingCall(name=call.name, arguments=call.arguments, id=call.id, message=reply.message)
        return {"step": state.step + 1, "pending_call": pending}
    problem = str(reply.tool_error) if reply.tool_error is not None else _no_call_message(ctx, tool_specs)
    return {"step": state.step + 1, **_model_error(state, ctx, problem, reply.message, call)}


async def _execute_pending(state: State, ctx: Context) -> dict[str, Any]:
    """Run the pending tool call and turn its outcome (or its ModelRetry) into a state update."""
    pending = state.pending_call
    if pending is None:
        raise UsageError("no pending tool call to run")
    table = by_name(tools_for(ctx.settings))
    if pending["name"] not in table:
        raise UsageError(f"tool {pending['name']!r} is not offered in this run")
    call = tp.ToolCall(pending["name"], pending["arguments"], pending["id"])
    try:
        outcome = await table[pending["name"]].run(ToolEnv(ctx, state), pending["arguments"])
    except ModelRetry as exc:
        return _model_error(state, ctx, str(exc), pending["message"], call)
    update: dict[str, Any] = {**outcome.update, "pending_call": None, "consecutive_errors": 0}
    if outcome.prune:
        call_info = {"name": call.name, "arguments": call.arguments, "id": call.id}
        update["anchor"] = Anchor(message=pending["message"], call=call_info, text=outcome.text)
        update["messages"] = []
    else:
        result = tp.tool_result_messages(outcome.text, ctx.llm.config.tool_protocol, call)
        update["messages"] = [*state.messages, pending["message"], *result]
    return update


async def run_tool(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Run ``segment_phrase``, ``select_masks_and_return`` or ``report_no_mask``."""
    return await _execute_pending(state, runtime.context)


async def verify_masks(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Run ``examine_each_mask``: concurrent accept/reject questions, one per unexamined candidate."""
    return await _execute_pending(state, runtime.context)


async def finish(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Log how the query ended; the answer is already in the state."""
    if state.status == "answered":
        logger.info("query %r answered with masks %s in %d step(s)", state.query, format_ids(state.answer_ids or []),
                    state.step)
    else:
        logger.info("query %r ended: %s %s", state.query, state.status, state.error)
    return {"pending_call": None}


def route(state: State) -> NodeName:
    """The next node: ``finish`` once the query has ended, else the pending call's node or ``call_model``."""
    if state.status != "running":
        return "finish"
    if state.pending_call is None:
        return "call_model"
    if state.pending_call["name"] == examine_each_mask.name:
        return "verify_masks"
    return "run_tool"


# ----------------------------------------------------------------------------------- building


def recursion_limit(settings: AgentSettings) -> int:
    """A LangGraph ``recursion_limit`` the step budget always reaches first (two nodes per step)."""
    return 2 * settings.max_steps + 10


def build_graph(checkpointer: BaseCheckpointSaver | None = None) -> CompiledStateGraph:
    """The compiled agent graph, with ``checkpointer`` (a new ``InMemorySaver`` when None).

    Invoke it as ``await graph.ainvoke(new_query(query, image.key), {"configurable": {"thread_id": ...},
    "recursion_limit": recursion_limit(settings)}, context=Context(...))``; :func:`agent.runner.run_agent`
    does exactly that.
    """
    builder = StateGraph(State, context_schema=Context)
    builder.add_node("call_model", call_model)
    builder.add_node("run_tool", run_tool)
    builder.add_node("verify_masks", verify_masks)
    builder.add_node("finish", finish)
    builder.add_edge(START, "call_model")
    for node in ("call_model", "run_tool", "verify_masks"):
        builder.add_conditional_edges(node, route)
    builder.add_edge("finish", END)
    return builder.compile(checkpointer=checkpointer if checkpointer is not None else InMemorySaver())
