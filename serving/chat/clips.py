"""Chat conversations about a video clip, kept in the server's memory.

A clip conversation is one uploaded clip (checked and sampled once, :mod:`serving.clips`) and the video
agent's thread on it: every message is one video-agent query on the thread named by the conversation id,
so the masklets found for earlier messages keep their ids, are shown to the model again (keyframes with
their ids) and can be chosen without being tracked again ("now only the one on the left"). The thread's
state lives in the checkpointer of :attr:`ClipChats.graph`; the masklets' tracks (a COCO RLE per frame)
in the conversation's :class:`~agent.masklets.MaskletStore`, carried from one message to the next.

Unlike image conversations these are not written to the state database: a clip conversation lasts until
it is deleted, unused for ``idle_s``, pushed out by newer ones (at most ``max_count``), or the server stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from agent.graph import build_graph
from agent.masklets import MaskletStore
from serving.clips import ClipPlan
from serving.http.errors import ApiError
from serving.http.video_sessions import remove_folder

logger = logging.getLogger(__name__)


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


class ClipChats:
    """The clip conversations of one app (in memory), with one agent graph whose checkpointer keeps the threads."""

    def __init__(self, max_count: int, idle_s: float) -> None:
        self.max_count, self.idle_s = max_count, idle_s
        self.graph: CompiledStateGraph = build_graph()
        self._conversations: dict[str, ClipConversation] = {}

    def __len__(self) -> int:
        return len(self._conversations)

    async def add(self, name: str, folder: Path, plan: ClipPlan) -> ClipConversation:
        """A new conversation; idle ones (and then the least recently used free one) make room. 429 when all
        ``max_count`` conversations are answering a message."""
        await self.sweep()
        while len(self._conversations) >= self.max_count:
            free = [c for c in self._conversations.values() if not c.lock.locked()]
            if not free:
                raise ApiError(429, f"{self.max_count} clip conversations are busy; retry shortly",
                               "too_many_conversations")
            await self.forget(min(free, key=lambda c: c.last_used).id)
        conversation = ClipConversation(f"clip-{uuid.uuid4().hex}", name, folder, plan)
        self._conversations[conversation.id] = conversation
        return conversation

    def get(self, conversation_id: str) -> ClipConversation:
        """The conversation (its use noted); 404 when unknown or expired."""
        conversation = self._conversations.get(conversation_id)
        if conversation is None:
            raise ApiError(404, f"no clip conversation {conversation_id!r} on this server (they last "
                                f"{self.idle_s:g} s unused, and not across restarts)", "unknown_conversation")
        conversation.last_used = time.monotonic()
        return conversation

    async def forget(self, conversation_id: str) -> bool:
        """Delete a conversation: its clip folder and its agent thread; False when unknown."""
        conversation = self._conversations.pop(conversation_id, None)
        if conversation is None:
            return False
        await asyncio.to_thread(remove_folder, conversation.folder)
        await self.graph.checkpointer.adelete_thread(conversation_id)  # type: ignore[union-attr]
        return True

    async def sweep(self, now: float | None = None) -> list[str]:
        """Forget conversations unused for ``idle_s`` (not one answering a message); returns their ids."""
        now = time.monotonic() if now is None else now
        doomed = [c.id for c in self._conversations.values()
                  if now - c.last_used > self.idle_s and not c.lock.locked()]
        for conversation_id in doomed:
            await self.forget(conversation_id)
        if doomed:
            logger.info("forgot %d idle clip conversation(s)", len(doomed))
        return doomed

    async def close(self) -> None:
        """Forget every conversation (at shutdown)."""
        for conversation_id in list(self._conversations):
            await self.forget(conversation_id)
