"""The agent's graph state: what LangGraph checkpoints after every step, for every medium.

:class:`State` holds only small, plain values: strings, numbers, lists and dicts. Masks are kept as
COCO RLE (:class:`MaskRecord`) and decoded with :func:`decode_masks` when a node needs pixels; the
image itself is never stored, only its content key. The run context (LLM client, engine, image or
video; never checkpointed) is in :mod:`agent.context`.

A thread (one ``thread_id``) belongs to one image. Each query on it starts with :func:`new_query`,
which resets the per-query fields (conversation, counters, answer) and keeps the masks, so a
follow-up query can reuse masks found for an earlier one with their ids.

The same :class:`State` serves the video agent (:mod:`agent.video_agent`): ``State.masks`` then holds
masklet records (objects tracked through the video) and ``State.image_key`` the video's key.

This module imports nothing from :mod:`tools` (the tools import it).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

import numpy as np

from agent.settings import AgentSettings
from sam3_core.postprocess import rle_to_mask

__all__ = [
    "FINAL_STATUSES", "INVALID_REPLIES", "LIMITS", "AgentSettings", "Anchor", "MaskRecord", "PendingCall",
    "State", "Status", "decode_masks", "new_query", "state_from_values",
]

#: How a query ended. ``running`` while the graph works on it; ``answered``: masks were selected;
#: ``no_mask``: the model reported that the target is not in the image; ``budget_exhausted``: a limit
#: (``max_steps``, ``max_seconds`` or ``max_tokens``) was reached before an answer -- the best answer
#: so far is returned; ``failed``: the model kept making invalid replies, or the LLM endpoint failed.
Status = Literal["running", "answered", "no_mask", "budget_exhausted", "failed"]
FINAL_STATUSES: frozenset[str] = frozenset({"answered", "no_mask", "budget_exhausted", "failed"})

#: ``State.cause`` of a ``failed`` query whose model made too many invalid replies in a row. Any other
#: cause of a ``failed`` query is the :class:`~sam3_core.errors.RunFailed` cause of an LLM endpoint
#: failure (``llm_timeout``, ``llm_unavailable``, ...).
INVALID_REPLIES = "invalid_replies"
#: The ``State.cause`` values of ``budget_exhausted``: the name of the limit that was reached.
LIMITS: tuple[str, ...] = ("max_steps", "max_seconds", "max_tokens")


class MaskRecord(TypedDict):
    """One mask found by ``segment_phrase``, as stored in the state.

    Keys: ``id`` (stable, from 1, never reused on the thread), ``phrase`` (the phrase that found it),
    ``score`` (SAM 3's score), ``box`` (pixel ``x1, y1, x2, y2``), ``area`` (pixels), ``rle`` (COCO RLE
    ``{"size": [H, W], "counts": str}``), ``status`` (``"candidate"`` or ``"rejected"`` by
    ``examine_each_mask``) and ``verified`` (True once ``examine_each_mask`` accepted it).
    """

    id: int
    phrase: str
    score: float
    box: list[float]
    area: int
    rle: dict[str, Any]
    status: Literal["candidate", "rejected"]
    verified: bool


class PendingCall(TypedDict):
    """A validated tool call waiting to be run: name, kind (the tool's :data:`~tools.registry.ToolKind`,
    which the router reads), arguments, call id and the assistant message."""

    name: str
    kind: str
    arguments: dict[str, Any]
    id: str
    message: dict[str, Any]


class Anchor(TypedDict):
    """The latest ``segment_phrase`` exchange, the fixed point of the pruned conversation.

    ``message`` is the assistant message that made the call, ``call`` its ``name``/``arguments``/``id``
    and ``text`` the tool result text. The overlay image is not stored: it is rendered from the
    current candidates each time the conversation is built.
    """

    message: dict[str, Any]
    call: dict[str, Any]
    text: str


@dataclass
class State:
    """The checkpointed state of one thread (one image, one or more queries)."""

    #: The current query, as the user wrote it.
    query: str = ""
    #: Content key (:attr:`LoadedImage.key`) of the thread's image; a thread never changes image.
    image_key: str = ""
    #: Every mask found on this thread, candidates and rejected ones, in id order (RLE, no arrays).
    masks: list[MaskRecord] = field(default_factory=list)
    #: The id the next new mask gets; ids start at 1 and are never reused.
    next_mask_id: int = 1
    #: Phrases sent to ``segment_phrase`` for the current query, in order.
    phrases_tried: list[str] = field(default_factory=list)
    #: Main-loop LLM replies so far for the current query (checked against ``max_steps``).
    step: int = 0
    #: Invalid replies or failed tool calls in a row (checked against ``max_retries``).
    consecutive_errors: int = 0
    #: Verification questions asked by ``examine_each_mask`` for the current query.
    verify_calls: int = 0
    #: The latest ``segment_phrase`` exchange; None before the first one of the current query.
    anchor: Anchor | None = None
    #: Text-only chat messages since the anchor (pruned at every ``segment_phrase``).
    messages: list[dict[str, Any]] = field(default_factory=list)
    #: The tool call chosen by the model and not yet run.
    pending_call: PendingCall | None = None
    #: The mask ids of the answer (``[]`` for ``no_mask``); None while there is no answer.
    answer_ids: list[int] | None = None
    #: Where the current query stands, see :data:`Status`.
    status: Status = "running"
    #: Why the query ended without an answer (``budget_exhausted``, ``failed``); empty otherwise.
    error: str = ""
    #: In a word, why: the limit (:data:`LIMITS`) for ``budget_exhausted``; :data:`INVALID_REPLIES` or
    #: the LLM failure's cause for ``failed``; empty otherwise.
    cause: str = ""
    #: Ids accepted by ``examine_each_mask`` during the current query (the first choice of the best answer).
    accepted_ids: list[int] = field(default_factory=list)
    #: When the current query started (``time.time()``), for ``max_seconds`` and the wall time.
    started_at: float = 0.0
    #: One plain-JSON record per node run of the current query (see :mod:`agent.trace`).
    trace: list[dict[str, Any]] = field(default_factory=list)
    #: The per-query totals of :attr:`trace`, set when the query ends (see :func:`agent.trace.totals`).
    timings: dict[str, Any] = field(default_factory=dict)

    def candidates(self) -> list[MaskRecord]:
        """The masks still in play (not rejected), in id order."""
        return [m for m in self.masks if m["status"] == "candidate"]

    def candidate_ids(self) -> list[int]:
        """Ids of :meth:`candidates`."""
        return [m["id"] for m in self.candidates()]

    def mask_by_id(self, mask_id: int) -> MaskRecord | None:
        """The record with this id (candidate or rejected), or None."""
        return next((m for m in self.masks if m["id"] == mask_id), None)


def new_query(query: str, image_key: str) -> dict[str, Any]:
    """The state update that starts ``query`` on a thread: per-query fields reset, masks kept."""
    return {
        "query": query,
        "image_key": image_key,
        "phrases_tried": [],
        "step": 0,
        "consecutive_errors": 0,
        "verify_calls": 0,
        "anchor": None,
        "messages": [],
        "pending_call": None,
        "answer_ids": None,
        "status": "running",
        "error": "",
        "cause": "",
        "accepted_ids": [],
        "started_at": time.time(),
        "trace": [],
        "timings": {},
    }


def state_from_values(values: dict[str, Any]) -> State:
    """A :class:`State` from a checkpoint's or ``ainvoke``'s values dict (unknown keys ignored)."""
    names = {f.name for f in dataclasses.fields(State)}
    return State(**{k: v for k, v in values.items() if k in names})


def decode_masks(records: Sequence[MaskRecord], size_hw: tuple[int, int]) -> np.ndarray:
    """The ``(N, H, W)`` bool masks of ``records`` (``(0, H, W)`` when there are none)."""
    if not records:
        return np.zeros((0, *size_hw), dtype=bool)
    return np.stack([rle_to_mask(r["rle"]) for r in records])


def __getattr__(name: str) -> Any:
    # ``agent.state.Context`` was the image run context's home; it lives in :mod:`agent.context` now and
    # is imported on first use so that this module stays free of the engine and the tools.
    if name == "Context":
        from agent.context import Context

        return Context
    raise AttributeError(f"module 'agent.state' has no attribute {name!r}")
