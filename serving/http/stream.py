"""The agent's steps as events, for server-sent events and the chat page.

:class:`StreamingGraph` stands in for the compiled graph that :func:`agent.runner.run_agent` accepts
(``graph=``): ``aget_state`` is passed through, and ``ainvoke`` runs the graph with
``astream(stream_mode=["updates", "values"])`` instead, turning every node's update into an event for
a sink and returning the final values exactly as ``ainvoke`` would. So a streamed run is the same run
(same thread, same checkpointer, same answer) with a view of its steps.

Events (plain dicts, see :class:`serving.http.schemas.AgentEvent`):

* ``tool_call``: the model chose a tool (``step``, ``name``, ``arguments``);
* ``tool_result``: the tool ran (``name``, ``text`` as the model reads it, ``candidates`` with id,
  phrase, score and box, and ``overlay_png`` with the numbered candidate masks when overlays are on);
* ``retry``: the model's reply or call was invalid and it is asked again (``text``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from agent.state import Context, decode_masks
from serving.http.render import candidates_overlay_png

logger = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any]], Awaitable[None]]
_TOOL_NODES = frozenset({"run_tool", "verify_masks"})
_RESPONSE_TAGS = re.compile(r"</?tool_response>")


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message (string content, or the text parts of a list), tags removed."""
    content = message.get("content") or ""
    if isinstance(content, list):
        content = "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return _RESPONSE_TAGS.sub("", str(content)).strip()


def candidate_summaries(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Id, phrase, score and box of every candidate mask in the state values."""
    return [{"id": m["id"], "phrase": m["phrase"], "score": round(float(m["score"]), 4),
             "box_xyxy": [round(float(v), 1) for v in m["box"]]}
            for m in values.get("masks", []) if m.get("status") == "candidate"]


def _last_text(update: dict[str, Any]) -> str:
    messages = update.get("messages") or []
    return message_text(messages[-1]) if messages else ""


class StreamingGraph:
    """A compiled agent graph whose ``ainvoke`` reports each step to ``sink`` (see the module docstring)."""

    def __init__(self, graph: CompiledStateGraph, sink: EventSink, *, overlays: bool = False) -> None:
        self._graph, self._sink, self._overlays = graph, sink, overlays
        self._last_call = ""
        self._step = 0

    async def aget_state(self, config: dict[str, Any], **kwargs: Any) -> Any:
        return await self._graph.aget_state(config, **kwargs)

    async def ainvoke(self, graph_input: Any, config: dict[str, Any], *, context: Context,
                      **kwargs: Any) -> dict[str, Any]:
        """Run the graph to the end, reporting steps; returns the final state values."""
        values: dict[str, Any] = {}
        pending: list[tuple[str, dict[str, Any]]] = []
        async for mode, chunk in self._graph.astream(graph_input, config, context=context,
                                                     stream_mode=["updates", "values"], **kwargs):
            if mode == "updates":
                pending.extend((node, update or {}) for node, update in chunk.items())
                continue
            values = chunk
            for node, update in pending:  # the values after a step follow that step's updates
                await self._report(node, update, values, context)
            pending.clear()
        for node, update in pending:
            await self._report(node, update, values, context)
        return values

    async def _report(self, node: str, update: dict[str, Any], values: dict[str, Any], context: Context) -> None:
        event = await self._event(node, update, values, context)
        if event is not None:
            await self._sink(event)

    async def _event(self, node: str, update: dict[str, Any], values: dict[str, Any],
                     context: Context) -> dict[str, Any] | None:
        if node == "call_model":
            self._step = update.get("step", self._step)
            call = update.get("pending_call")
            if call:
                self._last_call = call["name"]
                return {"type": "tool_call", "step": self._step, "name": call["name"],
                        "arguments": call["arguments"]}
            if update.get("status") in (None, "running"):
                return {"type": "retry", "step": self._step, "text": _last_text(update)}
            return None
        if node not in _TOOL_NODES:
            return None
        if update.get("consecutive_errors", 0):
            return {"type": "retry", "step": self._step, "name": self._last_call, "text": _last_text(update)}
        anchor = update.get("anchor")
        text = anchor["text"] if anchor else _last_text(update)
        candidates = candidate_summaries(values)
        event = {"type": "tool_result", "step": self._step, "name": self._last_call, "text": text,
                 "candidates": candidates}
        if self._overlays and candidates:
            event["overlay_png"] = await asyncio.to_thread(self._overlay, values, context)
        return event

    @staticmethod
    def _overlay(values: dict[str, Any], context: Context) -> str:
        records = [m for m in values.get("masks", []) if m.get("status") == "candidate"]
        masks = decode_masks(records, context.image.size_hw)
        return candidates_overlay_png(context.image.pixels, masks, [m["id"] for m in records])
