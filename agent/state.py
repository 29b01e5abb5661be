"""The agent's graph state (checkpointed) and run context (not checkpointed).

:class:`State` is what LangGraph stores after every step, so it holds only small, plain values:
strings, numbers, lists and dicts. Masks are kept as COCO RLE (:class:`MaskRecord`) and decoded with
:func:`decode_masks` when a node needs pixels; the image itself is never stored, only its content key.

:class:`Context` is LangGraph's run context (``context_schema``): the LLM client, the SAM 3 engine, the
image of the run and the :class:`AgentSettings`. It is handed to every node through
``runtime.context`` and is never written to the checkpointer.

A thread (one ``thread_id``) belongs to one image. Each query on it starts with :func:`new_query`,
which resets the per-query fields (conversation, counters, answer) and keeps the masks, so a
follow-up query can reuse masks found for an earlier one with their ids.

The same :class:`State` and graph serve the video agent (:mod:`agent.video_agent`): its run context
(:class:`agent.video_context.VideoContext`) brings its own :class:`Media` hooks (tools, conversation),
``State.masks`` then holds masklet records (objects tracked through the video) and ``State.image_key``
the video's key. :class:`ImageParts` (images within the pixel budget, cached per query) is shared by both
run contexts.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict

import numpy as np

from agent.image_urls import ImageLike, image_part
from agent.llm import LLMClient
from agent.settings import AgentSettings
from sam3_core.engine import Sam3Engine
from sam3_core.images import LoadedImage
from sam3_core.postprocess import rle_to_mask

if TYPE_CHECKING:
    from tools.registry import Tool

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
    """A validated tool call waiting to be run: name, arguments, call id and the assistant message."""

    name: str
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


class ImageParts:
    """Image parts within the run's pixel budget, shared by the image and the video run contexts.

    The class using it provides ``llm`` (an :class:`LLMClient`), ``settings`` (an :class:`AgentSettings`)
    and ``cache`` (a per-query dict).
    """

    llm: LLMClient
    settings: AgentSettings
    cache: dict[Hashable, Any]

    @property
    def pixel_budget(self) -> int | None:
        """Most pixels of each image sent to the LLM (None: no limit)."""
        return self.settings.image_max_pixels or self.llm.config.image_max_pixels

    def image_part(self, image: ImageLike) -> dict[str, Any]:
        """An OpenAI ``image_url`` part for ``image`` within the pixel budget of this run."""
        return image_part(image, self.pixel_budget, self.llm.config.image_format)

    def cached_part(self, key: Hashable, make: Callable[[], ImageLike]) -> dict[str, Any]:
        """:meth:`image_part` of ``make()``, made once per ``key`` for the life of this context."""
        part = self.cache.get(key)
        if part is None:
            part = self.cache[key] = self.image_part(make())
        return part


class Media(Protocol):
    """What the shared agent graph (:mod:`agent.graph`) asks of the medium a run works on.

    The graph's nodes, router, retries, limits, trace, LLM client and tool protocol are the same for
    every medium; a run context's ``media`` supplies the rest. :data:`agent.graph.IMAGE_MEDIA` is the
    image agent's, :data:`agent.video_agent.VIDEO_MEDIA` the video agent's. ``ctx`` is the run context.
    """

    def key(self, ctx: Any) -> str:
        """The content key of the run's image or video; the thread's ``State.image_key`` must equal it."""
        ...

    def tools(self, ctx: Any) -> list[Tool]:
        """The tools offered to the model, in the order they are listed."""
        ...

    def opening(self, state: State, ctx: Any) -> list[dict[str, Any]]:
        """The fixed start of every conversation: the system prompt, then the query with the raw input."""
        ...

    def result_parts(self, state: State, ctx: Any) -> list[dict[str, Any]]:
        """Image parts showing the current candidates ([] when there are none); they go with the latest
        pruning tool result (the anchor), so only the newest overlay is ever in the conversation."""
        ...

    def earlier_text(self, state: State) -> str:
        """The note sent with :meth:`result_parts` when a query starts on a thread with candidates."""
        ...

    def before_model_call(self, state: State, ctx: Any) -> None:
        """Start background work before a main-loop call (the image agent prepares verification)."""
        ...


class RunContext(Protocol):
    """What the shared graph reads from a run context: the image :class:`Context` or a video one."""

    #: The multimodal LLM (its config picks the tool protocol).
    llm: LLMClient
    #: Limits and switches (a video run's are an :class:`AgentSettings` subclass).
    settings: AgentSettings
    #: The medium's hooks; None: the image agent's.
    media: Media | None
    #: Per-query cache.
    cache: dict[Hashable, Any]


@dataclass(frozen=True)
class Context(ImageParts):
    """Run dependencies given to every node as ``runtime.context`` (never checkpointed).

    A context lives for one query (:func:`agent.runner.run_agent` makes a new one each time), so its
    :attr:`cache` holds what does not change during the query: the raw image's part
    (:meth:`raw_image_part`), overlays keyed by what they show (:meth:`cached_part`), and verification
    questions prepared in the background (:func:`tools.segmentation.prepare_verification`).
    """

    #: The multimodal LLM (its config picks the tool protocol).
    llm: LLMClient
    #: The SAM 3 engine.
    engine: Sam3Engine
    #: The image of the thread; its key must match ``State.image_key``.
    image: LoadedImage
    #: Limits and switches.
    settings: AgentSettings = field(default_factory=AgentSettings)
    #: The medium's hooks for the graph (:class:`Media`); None: the image agent's
    #: (:data:`agent.graph.IMAGE_MEDIA`).
    media: Media | None = None
    #: Per-query cache (see above); keys are tuples whose first item says what they hold.
    cache: dict[Hashable, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def raw_image_part(self) -> dict[str, Any]:
        """The image part of the run's image itself (encoded once per context)."""
        return self.cached_part(("raw", self.image.key), lambda: self.image.pixels)
