"""Chat conversations about a video clip: in the server's memory, and in the state file when it has one.

A clip conversation is one uploaded clip (checked and sampled once, :mod:`serving.clips`) and the video
agent's thread on it: every message is one video-agent query on the thread named by the conversation id,
so the masklets found for earlier messages keep their ids, are shown to the model again (keyframes with
their ids) and can be chosen without being tracked again ("now only the one on the left"). The thread's
state lives in the checkpointer of :attr:`ClipChats.graph`; the masklets' tracks (a COCO RLE per frame)
in the conversation's :class:`~agent.masklets.MaskletStore`, carried from one message to the next.

Two modes:

* **Memory only** (no state file): a conversation lasts until it is deleted, unused for ``idle_s``, pushed
  out by newer ones (at most ``max_count``), or the server stops; its clip folder goes with it.
* **Stored** (:class:`StoredClips`: the server has a state file): the conversation row (name, creation time,
  clip plan), its transcript and its masklet tracks are written to the state database
  (:class:`~serving.chat.store.ChatStore`), the agent thread to the app's shared checkpointer, and the clip
  folder is moved to ``<state file>.clips/<conversation id>/`` (for a sampled clip only the sampled frames
  are kept). A restarted server continues the conversation. ``max_count`` and ``idle_s`` then bound only
  what is held in memory: a conversation unused for ``idle_s`` or pushed out by newer ones is dropped from
  memory, not deleted, and read back from the database on its next use. What deletes a stored one is
  ``DELETE`` or retention (:mod:`serving.chat.retention`: age and size limits, the clip folder counted),
  which removes the row, the thread and the folder together. A conversation whose clip folder has gone
  (removed by hand) still shows its transcript, and answers a message with 410 ``clip_gone``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from agent.graph import build_graph
from agent.masklets import MaskletStore
from serving.chat.retention import Retention, clip_folder
from serving.chat.store import ChatStore, ClipRow
from serving.clips import ClipPlan
from serving.http.errors import ApiError
from serving.http.video_sessions import remove_folder

logger = logging.getLogger(__name__)


def clip_root_for(state_db: str) -> Path:
    """Where a server with the state file ``state_db`` keeps the clips of its clip conversations."""
    return Path(f"{state_db}.clips")


@dataclass
class ClipConversation:
    """One clip, its agent thread (id = conversation id), the tracks found so far and the transcript."""

    id: str
    name: str
    folder: Path
    plan: ClipPlan
    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    turns: list[dict[str, Any]] = field(default_factory=list)
    #: The tracks of every masklet on the thread (None before the first message).
    store: MaskletStore | None = None
    #: One message at a time: a follow-up needs the answer before it.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def next_store(self) -> MaskletStore:
        """The store for the next message: the tracks so far, no engine sessions."""
        return self.store.carried() if self.store is not None else MaskletStore()

    def describe(self) -> dict[str, Any]:
        return {"conversation_id": self.id, "name": self.name, "created": self.created,
                "clip": self.plan.to_json(), "turns": self.turns}

    def require_clip(self) -> None:
        """410 ``clip_gone`` when the clip's frames (or file) are no longer on the server."""
        if not Path(self.plan.video).exists():
            raise ApiError(410, f"the clip of conversation {self.id!r} ({self.name}) is no longer on this server: "
                                "its folder of sampled frames was removed, so the agent cannot look at it again; "
                                "the transcript is still readable, start a new conversation to ask more",
                           "clip_gone")


@dataclass(frozen=True)
class StoredClips:
    """Where stored clip conversations go: the state database, its retention (which deletes row, thread and
    folder together), the app's graph (its checkpointer is the state file's) and the folder of clips."""

    store: ChatStore
    retention: Retention
    graph: CompiledStateGraph
    root: Path


def _plan_json(plan: ClipPlan, folder: Path) -> dict[str, Any]:
    """The plan as stored: its video relative to the clip folder (so the folder's place may change)."""
    return {**dataclasses.asdict(plan), "video": Path(plan.video).relative_to(folder).as_posix(),
            "frame_indices": list(plan.frame_indices)}


def _plan_from_json(data: dict[str, Any], folder: Path) -> ClipPlan:
    """A stored plan with its video under ``folder``; ValueError when the stored path leaves the folder."""
    relative = Path(data["video"])
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"stored clip path {data['video']!r} is not inside the clip folder")
    return ClipPlan(**{**data, "video": str(folder / relative), "frame_indices": tuple(data["frame_indices"])})


def _keep_clip(folder: Path, plan: ClipPlan, target: Path) -> int:
    """Move the clip folder to ``target`` (keeping only what the agent reads); the bytes it holds. Blocking."""
    video = Path(plan.video)
    if plan.sampled:  # the agent reads the sampled frames only: the upload itself need not be kept
        for path in folder.iterdir():
            if path.is_file() and path != video:
                path.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(folder), str(target))
    return sum(path.stat().st_size for path in target.rglob("*") if path.is_file())


class ClipChats:
    """The clip conversations of one app, with one agent graph whose checkpointer keeps the threads.

    Args:
        max_count: conversations held in memory at once (the least recently used free one makes room).
        idle_s: a conversation unused this long leaves memory (deleted when not stored).
        stored: write conversations to the state file (None: memory only).
    """

    def __init__(self, max_count: int, idle_s: float, stored: StoredClips | None = None) -> None:
        self.max_count, self.idle_s, self.stored = max_count, idle_s, stored
        self.graph: CompiledStateGraph = stored.graph if stored is not None else build_graph()
        self._conversations: dict[str, ClipConversation] = {}

    def __len__(self) -> int:
        return len(self._conversations)

    async def add(self, name: str, folder: Path, plan: ClipPlan) -> ClipConversation:
        """A new conversation; idle ones (and then the least recently used free one) make room. 429 when all
        ``max_count`` conversations are answering a message. Stored: the folder is moved next to the state file."""
        await self._make_room()
        conversation_id = f"clip-{uuid.uuid4().hex}"
        created = time.time()
        if self.stored is not None:
            folder, plan, created = await self._store_new(conversation_id, name, folder, plan)
        conversation = ClipConversation(conversation_id, name, folder, plan, created)
        self._conversations[conversation.id] = conversation
        if self.stored is not None:
            await self.stored.retention.after_write(None)
            if await self.stored.store.aclip(conversation_id) is None:  # the newest goes last: alone over the limit
                self._conversations.pop(conversation_id, None)
                raise ApiError(413, f"the clip takes more space than this server keeps for conversations "
                                    f"({self.stored.retention.max_bytes} bytes); send a shorter clip or fewer "
                                    "max_frames", "clip_over_retention_limit")
        return conversation

    async def _store_new(self, conversation_id: str, name: str, folder: Path,
                         plan: ClipPlan) -> tuple[Path, ClipPlan, float]:
        assert self.stored is not None
        target = clip_folder(self.stored.root, conversation_id)
        try:
            size = await asyncio.to_thread(_keep_clip, folder, plan, target)
            created = await self.stored.store.acreate_clip(conversation_id, name, _plan_json(plan, folder), size)
        except BaseException:
            await asyncio.to_thread(remove_folder, target)
            raise
        moved = dataclasses.replace(plan, video=str(target / Path(plan.video).relative_to(folder)))
        return target, moved, created

    async def _make_room(self) -> None:
        await self.sweep()
        while len(self._conversations) >= self.max_count:
            free = [c for c in self._conversations.values() if not c.lock.locked()]
            if not free:
                raise ApiError(429, f"{self.max_count} clip conversations are busy; retry shortly",
                               "too_many_conversations")
            await self._leave_memory(min(free, key=lambda c: c.last_used).id)

    def _unknown(self, conversation_id: str) -> ApiError:
        if self.stored is not None:
            why = "deleted, or removed by the server's retention limits"
        else:
            why = f"they last {self.idle_s:g} s unused, and not across restarts"
        return ApiError(404, f"no clip conversation {conversation_id!r} on this server ({why})",
                        "unknown_conversation")

    def get(self, conversation_id: str) -> ClipConversation:
        """The conversation held in memory (its use noted); 404 when it is not."""
        conversation = self._conversations.get(conversation_id)
        if conversation is None:
            raise self._unknown(conversation_id)
        conversation.last_used = time.monotonic()
        return conversation

    async def find(self, conversation_id: str) -> ClipConversation:
        """The conversation, read back from the state file when it is stored but not in memory; 404 when unknown,
        expired or deleted (also by retention or by another server sharing the file)."""
        if self.stored is None:
            return self.get(conversation_id)
        row = await self.stored.store.aclip(conversation_id)
        if row is None:
            self._conversations.pop(conversation_id, None)  # deleted behind our back: retention, another route
            raise self._unknown(conversation_id)
        if conversation_id not in self._conversations:
            await self._make_room()
            restored = await self._restore(row)
            self._conversations.setdefault(conversation_id, restored)  # a concurrent find may have restored it
        return self.get(conversation_id)

    async def _restore(self, row: ClipRow) -> ClipConversation:
        """A stored conversation as it was after its last message (transcript and masklet tracks)."""
        assert self.stored is not None
        folder = clip_folder(self.stored.root, row.id)
        turns = await self.stored.store.aclip_turns(row.id)
        tracks = await self.stored.store.aclip_masklets(row.id) or {}
        try:
            for turn in turns:  # stored before its index was known
                turn["answer"]["turn_index"] = turn["index"]
            plan = _plan_from_json(row.plan, folder)
            store = await asyncio.to_thread(MaskletStore.from_json, tracks) if tracks else None
        except (KeyError, TypeError, ValueError) as exc:
            logger.error("clip conversation %s in the state file is damaged: %s", row.id, exc)
            raise ApiError(500, f"clip conversation {row.id!r} is damaged in the server's state file",
                           "damaged_conversation") from exc
        logger.info("clip conversation %s read back from the state file (%d turns)", row.id, len(turns))
        return ClipConversation(row.id, row.name, folder, plan, row.created, turns=turns, store=store)

    async def record(self, conversation: ClipConversation, message: str, answer: dict[str, Any]) -> int:
        """Add an answered message to the transcript (stored: with the masklet tracks) and set the answer's
        ``turn_index``; returns it. 404 when the stored conversation was deleted while it answered."""
        index, stored = len(conversation.turns), self.stored
        if stored is not None:
            tracks = conversation.store or MaskletStore()
            saved = await asyncio.to_thread(
                lambda: stored.store.add_clip_turn(conversation.id, message, answer, tracks.to_json()))
            if saved is None:
                self._conversations.pop(conversation.id, None)
                raise self._unknown(conversation.id)
            index = saved
        answer["turn_index"] = index
        conversation.turns.append({"index": index, "message": message, "answer": answer})
        conversation.last_used = time.monotonic()  # idle from the answer on, not from the question
        if stored is not None:
            await stored.retention.after_write(conversation.id)
        return index

    async def save_tracks(self, conversation: ClipConversation) -> None:
        """Store the masklet tracks after a failed message (its masklets may already be on the thread)."""
        stored, tracks = self.stored, conversation.store
        if stored is not None and tracks is not None:
            await asyncio.to_thread(lambda: stored.store.save_clip_masklets(conversation.id, tracks.to_json()))

    async def forget(self, conversation_id: str) -> bool:
        """Delete a conversation: its clip folder, its agent thread (and stored row); False when unknown."""
        conversation = self._conversations.pop(conversation_id, None)
        if self.stored is not None:
            if await self.stored.store.aclip(conversation_id) is None:
                return False
            return await self.stored.retention.forget(conversation_id)
        if conversation is None:
            return False
        await asyncio.to_thread(remove_folder, conversation.folder)
        await self.graph.checkpointer.adelete_thread(conversation_id)  # type: ignore[union-attr]
        return True

    async def _leave_memory(self, conversation_id: str) -> None:
        """Make room: a stored conversation only leaves memory; one kept nowhere else is deleted."""
        if self.stored is not None:
            self._conversations.pop(conversation_id, None)
        else:
            await self.forget(conversation_id)

    async def sweep(self, now: float | None = None) -> list[str]:
        """Conversations unused for ``idle_s`` (not one answering a message) leave memory (and, when not stored,
        are deleted); returns their ids."""
        now = time.monotonic() if now is None else now
        idle = [c.id for c in self._conversations.values()
                if now - c.last_used > self.idle_s and not c.lock.locked()]
        for conversation_id in idle:
            await self._leave_memory(conversation_id)
        if idle:
            logger.info("%s %d idle clip conversation(s)", "unloaded" if self.stored else "forgot", len(idle))
        return idle

    async def close(self) -> None:
        """At shutdown: stored conversations stay in the state file; the others are deleted."""
        for conversation_id in list(self._conversations):
            await self._leave_memory(conversation_id)
