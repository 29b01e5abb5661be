"""The agent loop as a LangGraph ``StateGraph``, the same for every medium (image, video).

Nodes::

    START -> call_model -+-> run_tool ------+--> call_model ...
                         +-> verify_masks --+
                         +-> call_model          (an invalid reply: retry message, ask again)
                         +-> finish -> END       (answered, no mask, budget used up, failed)

:func:`route` picks the next node from the state after every node except ``finish``: by the **kind** of
the pending tool (:data:`tools.registry.ToolKind`; ``verify`` tools run in ``verify_masks``, every other
kind in ``run_tool``), never by its name.

* **State** (:class:`agent.state.State`, checkpointed): the query, the masks or masklets of the thread
  (RLE), the pruned conversation, counters, the answer, the trace.
* **Context** (:class:`agent.context.RunContext`, LangGraph's ``context=``; never checkpointed): the LLM
  client, the settings, the per-query cache and the **medium** (:class:`agent.media.Media`): the tools
  offered, the conversation's opening, the images shown with the anchor, the thread key and background
  work before each model call. The image :class:`agent.context.Context` and the
  :class:`agent.video_context.VideoContext` are peers; neither is special to the graph.

``call_model`` builds a **pruned** conversation each time (:func:`agent.conversation.build_messages`).
Model mistakes never raise: an unreadable reply, a reply without a tool call, an unknown tool, wrong
arguments, or a tool raising :class:`~sam3_core.errors.ModelRetry` is answered with the retry message
as the tool result, up to ``AgentSettings.max_retries`` times in a row; one more ends the query with
status ``failed`` (cause ``invalid_replies``).

Limits (:mod:`agent.limits`): before every model call the step, time and token budgets are checked,
and model calls and tools are abandoned at the ``max_seconds`` deadline; a limit ends the query with
status ``budget_exhausted`` and the best answer so far in ``answer_ids``. An LLM endpoint failure
(:class:`~sam3_core.errors.RunFailed`) ends the query with status ``failed`` and the failure's cause; so
does a reply the client cannot read (cause ``llm_bad_response``) and a tool that raises an unexpected
error (cause ``tool_error``): every end of a query is a status, never a traceback.

Model output is bounded before it reaches the state (:mod:`agent.reply_limits` bounds a reply's bytes,
:mod:`agent.argument_bounds` its call's arguments: an out-of-range integer or a huge list is answered
with a retry message and never checkpointed); the trace keeps a compact copy of every call's arguments.

Every node run appends a record to ``State.trace`` (:mod:`agent.trace`); ``finish`` sums it into
``State.timings``. The graph is compiled with a checkpointer (an ``InMemorySaver`` unless one is given),
so a thread can be continued: invoke it again with the same ``thread_id`` and
:func:`agent.state.new_query`, and the masks found so far keep their ids.
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
from agent.argument_bounds import argument_problem, compact_arguments
from agent.call_choices import call_choices
from agent.context import RunContext
from agent.conversation import build_messages, model_error, no_call_message, tool_applied
from agent.limits import DeadlineReached, before_deadline, elapsed_s, exhausted_update, limit_reached, time_limit
from agent.llm import LLMReply
from agent.settings import AgentSettings
from agent.state import PendingCall, State
from agent.trace import Outcome, StepMeter, totals
from sam3_core.errors import ModelRetry, RunFailed, UsageError
from tools.registry import ToolEnv, by_name, specs

logger = logging.getLogger(__name__)

#: ``State.cause`` of a query whose tool raised an unexpected error (logged with its traceback).
TOOL_ERROR = "tool_error"
#: The graph's nodes (what :func:`route` returns).
NodeName = Literal["call_model", "run_tool", "verify_masks", "finish"]


def _traced(state: State, update: dict[str, Any], meter: StepMeter, *, node: str, step: int, tool: str | None,
            arguments: dict[str, Any] | None, outcome: Outcome, detail: str = "") -> dict[str, Any]:
    """``update`` with this node run's record appended to the trace (see :mod:`agent.trace`)."""
    record = meter.record(index=len(state.trace), step=step, node=node, tool=None if tool is None else tool[:100],
                          arguments=compact_arguments(arguments or {}), outcome=outcome, detail=detail,
                          query_started=state.started_at)
    return {**update, "trace": [*state.trace, record]}


def _llm_failed(exc: RunFailed) -> dict[str, Any]:
    """State update for an LLM endpoint failure (after the client's own retries): status ``failed``."""
    logger.error("LLM endpoint failed (%s): %s", exc.cause, exc)
    return {"status": "failed", "cause": exc.cause, "error": str(exc), "pending_call": None}


async def _ask_model(state: State, ctx: RunContext, meter: StepMeter) -> tuple[LLMReply | None, dict[str, Any] | None,
                                                                           str]:
    """One main-loop LLM call within the deadline: ``(reply, None, "")``, or ``(None, update, detail)`` when
    the deadline passed or the endpoint failed."""
    tool_specs = specs(ctx.media.tools(ctx))
    ctx.media.before_model_call(state, ctx)
    messages = await asyncio.to_thread(build_messages, state, ctx)  # overlays and encoding off the event loop
    try:
        with meter.timing("model"):
            # narrows a constrained call only; a video's frame count bounds its frame indices
            choices = call_choices(state, ctx.settings, tool_specs, num_frames=getattr(ctx, "num_frames", None))
            reply = await before_deadline(ctx.llm.chat(messages, tool_specs, choices=choices), state, ctx.settings)
    except DeadlineReached:
        limit = time_limit(state, ctx.settings)
        return None, exhausted_update(state, limit), limit.message
    except RunFailed as exc:
        return None, _llm_failed(exc), str(exc)
    except UsageError:
        raise  # the caller's mistake (e.g. a closed client), not the reply's
    except Exception as exc:  # an LLM client that cannot read a reply must end the query, not the server
        logger.exception("the LLM client failed on a reply")
        failure = RunFailed(f"the LLM reply could not be read: {type(exc).__name__}: {exc}", cause="llm_bad_response")
        return None, _llm_failed(failure), str(failure)
    meter.count(reply.usage)
    return reply, None, ""


async def call_model(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Ask the LLM for its next tool call, or end the query when a limit is reached or the LLM fails."""
    ctx, meter = runtime.context, StepMeter()
    if state.image_key != ctx.media.key(ctx):
        raise UsageError("the run context's image or video is not the one of this thread (keys differ)")
    traced = functools.partial(_traced, state, meter=meter, node="call_model", step=state.step + 1)
    limit = limit_reached(state, ctx.settings)
    if limit is not None:
        return traced(exhausted_update(state, limit), tool=None, arguments=None, outcome="limit", detail=limit.message)
    reply, ended, detail = await _ask_model(state, ctx, meter)
    if ended is not None or reply is None:
        ended = ended or {}
        outcome: Outcome = "limit" if ended["status"] == "budget_exhausted" else "failed"
        return traced(ended, tool=None, arguments=None, outcome=outcome, detail=detail)
    call = reply.tool_call
    logger.info("step %d: %s", state.step + 1,
                f"{call.name[:100]}({compact_arguments(call.arguments)})" if call else "no tool call")
    name, arguments = (call.name, call.arguments) if call is not None else (None, None)
    tools = by_name(ctx.media.tools(ctx))
    out_of_bounds = argument_problem(call.arguments) if call is not None and reply.tool_error is None else None
    if reply.tool_error is None and out_of_bounds is None and call is not None and call.name in tools:
        pending = PendingCall(name=call.name, kind=tools[call.name].kind, arguments=call.arguments, id=call.id,
                              message=reply.message)
        return traced({"step": state.step + 1, "pending_call": pending}, tool=name, arguments=arguments,
                      outcome="call")
    problem = (str(reply.tool_error) if reply.tool_error is not None
               else f"Invalid arguments for tool {call.name!r}: {out_of_bounds}." if call and out_of_bounds
               else no_call_message(ctx, specs(tools.values())))
    update = {"step": state.step + 1, **model_error(state, ctx, problem, reply.message, call)}
    return traced(update, tool=name, arguments=arguments,
                  outcome="failed" if update.get("status") == "failed" else "retry", detail=problem)


async def _execute_pending(state: State, ctx: RunContext, node: str) -> dict[str, Any]:
    """Run the pending tool call within the deadline and turn its outcome (or its ModelRetry, the
    deadline, an LLM failure) into a traced state update."""
    pending = state.pending_call
    if pending is None:
        raise UsageError("no pending tool call to run")
    table = by_name(ctx.media.tools(ctx))
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
        update = model_error(state, ctx, str(exc), pending["message"], call)
        return traced(update, outcome="failed" if update.get("status") == "failed" else "retry", detail=str(exc))
    except DeadlineReached:
        limit = time_limit(state, ctx.settings)
        return traced(exhausted_update(state, limit), outcome="limit", detail=limit.message)
    except RunFailed as exc:
        return traced(_llm_failed(exc), outcome="failed", detail=str(exc))
    except UsageError:
        raise  # the caller's mistake (a wrong context), not the query's
    except Exception as exc:  # a crashing tool ends the query with a status, not the server's request
        logger.exception("tool %s failed", call.name)
        failure = {"status": "failed", "cause": TOOL_ERROR, "pending_call": None,
                   "error": f"tool {call.name} failed: {type(exc).__name__}: {exc}"}
        return traced(failure, outcome="failed", detail=failure["error"])
    return traced(tool_applied(state, ctx, outcome, call), outcome="final" if outcome.final else "ok")


async def run_tool(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Run a ``search``, ``refine`` or ``answer`` tool (SAM 3 calls, bookkeeping, the answer)."""
    return await _execute_pending(state, runtime.context, "run_tool")


async def verify_masks(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Run a ``verify`` tool: concurrent accept/reject questions, one per unexamined candidate."""
    return await _execute_pending(state, runtime.context, "verify_masks")


async def finish(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Sum the trace into the query's timings and log how the query ended (the answer is in the state)."""
    timings = totals(state.trace, elapsed_s(state) if state.started_at > 0 else None)
    if state.status == "answered":
        logger.info("query %r answered with ids %s in %d step(s), %.2f s", state.query, state.answer_ids or [],
                    state.step, timings["wall_s"])
    else:
        logger.info("query %r ended: %s %s", state.query, state.status, state.error)
    return {"pending_call": None, "timings": timings}


def route(state: State) -> NodeName:
    """The next node: ``finish`` once the query has ended, else by the pending tool's kind, else ``call_model``."""
    if state.status != "running":
        return "finish"
    if state.pending_call is None:
        return "call_model"
    return "verify_masks" if state.pending_call.get("kind") == "verify" else "run_tool"


def recursion_limit(settings: AgentSettings) -> int:
    """A LangGraph ``recursion_limit`` the step budget always reaches first (two nodes per step)."""
    return 2 * settings.max_steps + 10


def build_graph(checkpointer: BaseCheckpointSaver | None = None) -> CompiledStateGraph:
    """The compiled agent graph, with ``checkpointer`` (a new ``InMemorySaver`` when None).

    Invoke it as ``await graph.ainvoke(new_query(query, ctx.media.key(ctx)), {"configurable": {"thread_id":
    ...}, "recursion_limit": recursion_limit(settings)}, context=ctx)`` with an image
    :class:`~agent.context.Context` or a :class:`~agent.video_context.VideoContext`;
    :func:`agent.runner.run_agent` and :func:`agent.video_agent.run_video_agent` do exactly that.
    """
    builder = StateGraph(State, context_schema=RunContext)
    builder.add_node("call_model", call_model)
    builder.add_node("run_tool", run_tool)
    builder.add_node("verify_masks", verify_masks)
    builder.add_node("finish", finish)
    builder.add_edge(START, "call_model")
    for node in ("call_model", "run_tool", "verify_masks"):
        builder.add_conditional_edges(node, route)
    builder.add_edge("finish", END)
    return builder.compile(checkpointer=checkpointer if checkpointer is not None else InMemorySaver())
