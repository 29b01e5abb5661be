"""Retention of stored conversations and agent threads: by age, by size, and on request.

What a server keeps per thread: the chat image and transcript (:class:`~serving.chat.store.ChatStore`)
and the agent's checkpoints (the LangGraph checkpointer). :class:`Retention` deletes both together:
threads unused for ``max_age_s``, then the least recently used until the rest hold ``max_bytes``
at most. It runs every ``every_s`` seconds and after each write that adds data; one sweep at a time.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from langgraph.checkpoint.base import BaseCheckpointSaver

from serving.chat.store import ChatStore

logger = logging.getLogger(__name__)


@dataclass
class Retention:
    """Deletes what is over the limits from ``store`` and ``checkpointer`` (the same threads in both)."""

    store: ChatStore
    checkpointer: BaseCheckpointSaver | None
    max_age_s: float
    max_bytes: int
    every_s: float
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def forget(self, thread_id: str) -> bool:
        """Delete one conversation or agent thread everywhere; False when nothing was stored under it."""
        found = await self.store.adelete(thread_id)
        if self.checkpointer is not None:
            config = {"configurable": {"thread_id": thread_id}}
            found = found or await self.checkpointer.aget_tuple(config) is not None  # type: ignore[arg-type]
            await self.checkpointer.adelete_thread(thread_id)
        return found

    async def sweep(self) -> list[str]:
        """Apply the limits now; returns the threads deleted."""
        async with self._lock:
            doomed = await self.store.aexpired(self.max_age_s, self.max_bytes)
            for thread_id in doomed:
                await self.forget(thread_id)
            freed = await self.store.areclaim() if doomed else 0
        if doomed:
            logger.info("retention deleted %d conversation(s)/thread(s), %d bytes returned to the disk",
                        len(doomed), freed)
        return doomed

    async def after_write(self, thread_id: str | None) -> None:
        """Note that ``thread_id`` was used, then apply the limits (errors are logged, not raised: the
        request that wrote has succeeded)."""
        try:
            if thread_id:
                await self.store.atouch(thread_id)
            await self.sweep()
        except Exception:
            logger.exception("retention sweep failed")

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.sweep()
            except Exception:
                logger.exception("retention sweep failed")
