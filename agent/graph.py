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

Model mistakes never raise: an unreadable reply, a reply without a tool call, an unknown tool, wrong
arguments, or a tool raising :class:`~sam3_core.errors.ModelRetry` (unknown mask ids, a repeated
phrase, ``examine_each_mask`` before any mask) is answered with the retry message as the tool result,
up to ``AgentSettings.max_retries`` times in a row; one more ends the query with status ``failed``
(cause ``invalid_replies``). A phrase that finds nothing is not a mistake: its result is the
``after_segment_none`` prompt, which asks for a different phrase.

Limits (:mod:`agent.limits`): before every model call the step, time and token budgets are checked,
and model calls and tools are abandoned at the ``max_seconds`` deadline; a limit ends the query with
status ``budget_exhausted`` and the best answer so far in ``answer_ids``. An LLM endpoint failure
(:class:`~sam3_core.errors.RunFailed`, after the client's retries) ends the query with status
``failed`` and the failure's cause; :func:`agent.runner.run_agent` then raises it again, carrying the
answer and its trace. No exception: the caller gets the status, see :class:`agent.runner.AgentAnswer`.

Every node run appends a record to ``State.trace`` (node, tool, arguments, model/SAM/verification
time, tokens, overhead; see :mod:`agent.trace`), and ``finish`` sums it into ``State.timings``.

The graph is compiled with a checkpointer (an ``InMemorySaver`` unless one is given), so a thread can
be continued: invoke it again with the same ``thread_id`` and :func:`agent.state.new_query`, and the
masks found so far keep their ids. The run context (:class:`agent.state.Context`) goes in through
LangGraph's ``context=`` argument.

**Images and videos share this graph.** What depends on the medium comes from the run context's
``media`` (:class:`agent.state.Media`): the tools offered, the conversation's opening (system prompt,
query, raw image or frames), the images shown with the anchor, the thread key, and background work
before each call. :data:`IMAGE_MEDIA` is the image agent's (a :class:`~agent.state.Context` whose
``media`` is None); the video agent (:mod:`agent.video_agent`) runs this same compiled graph with a
:class:`agent.video_context.VideoContext` and its video tools. Nodes, router, retries, limits, pruning,
LLM client, tool protocol and trace are the same code for both.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from agent import tool_protocol as tp
from agent.call_choices import call_choices
from agent.limits import DeadlineReached, before_deadline, elapsed_s, exhausted_update, limit_reached, time_limit
from agent.llm import LLMReply
from agent.state import (
    INVALID_REPLIES,
    AgentSettings,
    Anchor,
    Context,
    Media,
    PendingCall,
    RunContext,
    State,
    decode_masks,
)
from agent.trace import Outcome, StepMeter, totals
from prompts import render_prompt
from sam3_core.drawing import render_masks
from sam3_core.errors import ModelRetry, RunFailed, UsageError
from tools.registry import Tool, ToolEnv, ToolOutcome, by_name, specs
from tools.segmentation import examine_each_mask, format_ids, prepare_verification, tools_for

logger = logging.getLogger(__name__)

NodeName = Literal["call_model", "run_tool", "verify_masks", "finish"]


# ----------------------------------------------------------------------------------- the conversation


def _tool_instructions(ctx: Context) -> str:
    """The system prompt's closing lines: budgets and, in native mode, how calls are made."""
    s = ctx.settings
    lines = [f"You have at most {s.max_steps} replies and {s.max_phrases} different phrases for this query."]
    if s.max_seconds is not None:
        lines.append(f"The query must be answered within {s.max_seconds:g} seconds.")
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
    ids = [m["id"] for m in candidates]

    def render() -> Any:
        return render_masks(ctx.image.pixels, decode_masks(candidates, ctx.image.size_hw), ids)

    return ctx.cached_part(("overlay", *ids), render)  # ids never change their mask: render each set once


def _earlier_masks_text(state: State) -> str:
    """Tells the model about masks kept from earlier queries on the thread."""
    listed = ", ".join(f'{m["id"]} ("{m["phrase"]}")' for m in state.candidates())
    return (
        "Masks found for earlier queries on this image are still available; the attached overlay shows "
        f"them with their ids: {listed}. If some of them match the query, you may select them directly; "
        "otherwise call segment_phrase."
    )


class ImageMedia:
    """The image agent's :class:`~agent.state.Media`: the four image tools, the raw image, one overlay."""

    def key(self, ctx: Context) -> str:
        """The content key of the run's image."""
        return ctx.image.key

    def tools(self, ctx: Context) -> list[Tool]:
        """:func:`tools.segmentation.tools_for` the run's settings."""
        return tools_for(ctx.settings)

    def opening(self, state: State, ctx: Context) -> list[dict[str, Any]]:
        """The system prompt, then the query with the raw image."""
        query_part = {"type": "text", "text": render_prompt("user_query", query=state.query)}
        return [
            {"role": "system", "content": render_prompt("system", tool_instructions=_tool_instructions(ctx))},
            {"role": "user", "content": [query_part, ctx.raw_image_part()]},
        ]

    def result_parts(self, state: State, ctx: Context) -> list[dict[str, Any]]:
        """The overlay of all current candidate masks ([] when there are none)."""
        overlay = _overlay_part(state, ctx)
        return [overlay] if overlay is not None else []

    def earlier_text(self, state: State) -> str:
        """Tells the model about masks kept from earlier queries on the thread."""
        return _earlier_masks_text(state)

    def before_model_call(self, state: State, ctx: Context) -> None:
        """Prepare the verification questions in the background (when verification is on)."""
        if ctx.settings.verification:
            prepare_verification(state, ctx)  # in the background, while the overlay is drawn and the model thinks


#: The media hooks of image runs (a :class:`~agent.state.Context` whose ``media`` is None).
IMAGE_MEDIA = ImageMedia()


def media_of(ctx: RunContext) -> Media:
    """The run context's media hooks: its own ``media``, or :data:`IMAGE_MEDIA` when it has none."""
    return ctx.media if ctx.media is not None else IMAGE_MEDIA


def build_messages(state: State, ctx: RunContext) -> list[dict[str, Any]]:
    """The pruned conversation for the next main-loop call (see the module docstring).

    The medium gives the opening (system prompt, query and raw input) and the candidates' images; the
    anchor exchange and the turns since it are the same for every medium.
    """
    media = media_of(ctx)
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


def _no_call_message(ctx: RunContext, tool_specs: list[tp.ToolSpec]) -> str:
    """The retry message for a reply that made no tool call."""
    names = ", ".join(s.name for s in tool_specs)
    text = f"Your reply did not call a tool. Every reply must call exactly one tool ({names})."
    if ctx.llm.config.tool_protocol == "text":
        text += "\n" + tp.format_instructions(tool_specs)
    return text


def _model_error(state: State, ctx: RunContext, problem: str, message: dict[str, Any],
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


# ----------------------------------------------------------------------------------- nodes


def _traced(state: State, update: dict[str, Any], meter: StepMeter, *, node: str, step: int, tool: str | None,
            arguments: dict[str, Any] | None, outcome: Outcome, detail: str = "") -> dict[str, Any]:
    """``update`` with this node run's record appended to the trace (see :mod:`agent.trace`)."""
    record = meter.record(index=len(state.trace), step=step, node=node, tool=tool, arguments=arguments,
                          outcome=outcome, detail=detail, query_started=state.started_at)
    return {**update, "trace": [*state.trace, record]}


def _llm_failed(exc: RunFailed) -> dict[str, Any]:
    """State update for an LLM endpoint failure (after the client's own retries): status ``failed``."""
    logger.error("LLM endpoint failed (%s): %s", exc.cause, exc)
    return {"status": "failed", "cause": exc.cause, "error": str(exc), "pending_call": None}


async def _ask_model(state: State, ctx: RunContext, meter: StepMeter) -> tuple[LLMReply | None, dict[str, Any] | None,
                                                                           str]:
    """One main-loop LLM call within the deadline: ``(reply, None, "")``, or ``(None, update, detail)`` when
    the deadline passed or the endpoint failed."""
    media = media_of(ctx)
    tool_specs = specs(media.tools(ctx))
    media.before_model_call(state, ctx)
    messages = await asyncio.to_thread(build_messages, state, ctx)  # overlays and encoding off the event loop
    try:
        with meter.timing("model"):
            choices = call_choices(state, ctx.settings, tool_specs)  # narrows a constrained call only
            reply = await before_deadline(ctx.llm.chat(messages, tool_specs, choices=choices), state, ctx.settings)
    except DeadlineReached:
        limit = time_limit(state, ctx.settings)
        return None, exhausted_update(state, limit), limit.message
    except RunFailed as exc:
        return None, _llm_failed(exc), str(exc)
    meter.count(reply.usage)
    return reply, None, ""


async def call_model(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Ask the LLM for its next tool call, or end the query when a limit is reached or the LLM fails."""
    ctx, meter = runtime.context, StepMeter()
    if state.image_key != media_of(ctx).key(ctx):
        raise UsageError("the run context's image or video is not the one of this thread (keys differ)")
    traced = functools.partial(_traced, state, meter=meter, node="call_model")
    limit = limit_reached(state, ctx.settings)
    if limit is not None:
        return traced(exhausted_update(state, limit), step=state.step + 1, tool=None, arguments=None, outcome="limit",
                      detail=limit.message)
    reply, ended, detail = await _ask_model(state, ctx, meter)
    if ended is not None or reply is None:
        ended = ended or {}
        outcome: Outcome = "limit" if ended["status"] == "budget_exhausted" else "failed"
        return traced(ended, step=state.step + 1, tool=None, arguments=None, outcome=outcome, detail=detail)
    call = reply.tool_call
    logger.info("step %d: %s", state.step + 1, f"{call.name}({call.arguments})" if call else "no tool call")
    name, arguments = (call.name, call.arguments) if call is not None else (None, None)
    if reply.tool_error is None and call is not None:
        pending = PendingCall(name=call.name, arguments=call.arguments, id=call.id, message=reply.message)
        return traced({"step": state.step + 1, "pending_call": pending}, step=state.step + 1, tool=name,
                      arguments=arguments, outcome="call")
    tool_specs = specs(media_of(ctx).tools(ctx))
    problem = str(reply.tool_error) if reply.tool_error is not None else _no_call_message(ctx, tool_specs)
    update = {"step": state.step + 1, **_model_error(state, ctx, problem, reply.message, call)}
    return traced(update, step=state.step + 1, tool=name, arguments=arguments,
                  outcome="failed" if update.get("status") == "failed" else "retry", detail=problem)


def _applied(state: State, ctx: RunContext, outcome: ToolOutcome, call: tp.ToolCall) -> dict[str, Any]:
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


async def _execute_pending(state: State, ctx: RunContext, node: str) -> dict[str, Any]:
    """Run the pending tool call within the deadline and turn its outcome (or its ModelRetry, the
    deadline, an LLM failure) into a traced state update."""
    pending = state.pending_call
    if pending is None:
        raise UsageError("no pending tool call to run")
    table = by_name(media_of(ctx).tools(ctx))
    if pending["name"] not in table:
        raise UsageError(f"tool {pending['name']!r} is not offered in this run")
    call = tp.ToolCall(pending["name"], pending["arguments"], pending["id"])
    meter = StepMeter()
    traced = functools.partial(_traced, state, meter=meter, node=node, step=state.step, tool=call.name,
                               arguments=call.arguments)
    try:
        work = table[call.name].run(ToolEnv(ctx, state, meter), call.arguments)
        outcome = await before_deadline(work, state, ctx.settings)
    except ModelRetry as exc:
        update = _model_error(state, ctx, str(exc), pending["message"], call)
        return traced(update, outcome="failed" if update.get("status") == "failed" else "retry", detail=str(exc))
    except DeadlineReached:
        limit = time_limit(state, ctx.settings)
        return traced(exhausted_update(state, limit), outcome="limit", detail=limit.message)
    except RunFailed as exc:
        return traced(_llm_failed(exc), outcome="failed", detail=str(exc))
    return traced(_applied(state, ctx, outcome, call), outcome="final" if outcome.final else "ok")


async def run_tool(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Run ``segment_phrase``, ``select_masks_and_return`` or ``report_no_mask``."""
    return await _execute_pending(state, runtime.context, "run_tool")


async def verify_masks(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Run ``examine_each_mask``: concurrent accept/reject questions, one per unexamined candidate."""
    return await _execute_pending(state, runtime.context, "verify_masks")


async def finish(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Sum the trace into the query's timings and log how the query ended (the answer is in the state)."""
    timings = totals(state.trace, elapsed_s(state) if state.started_at > 0 else None)
    if state.status == "answered":
        logger.info("query %r answered with masks %s in %d step(s), %.2f s", state.query,
                    format_ids(state.answer_ids or []), state.step, timings["wall_s"])
    else:
        logger.info("query %r ended: %s %s", state.query, state.status, state.error)
    return {"pending_call": None, "timings": timings}


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
