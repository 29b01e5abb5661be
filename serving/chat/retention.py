"""Retention of stored conversations and agent threads: by age, by size, and on request.

What a server keeps per thread: the chat image and transcript (:class:`~serving.chat.store.ChatStore`)
and the agent's checkpoints (the LangGraph checkpointer); for a clip conversation also its clip folder
(under ``clip_root``, next to the state file). :class:`Retention` deletes them together: threads unused
for ``max_age_s``, then the least recently used until the rest hold ``max_bytes`` at most (a clip
folder's bytes count). It runs every ``every_s`` seconds and after each write that adds data; one sweep
at a time. A sweep also removes clip folders no stored conversation names (a server stopped between moving a
clip in and writing its row) once they are :data:`LITTER_GRACE_S` old.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver

from serving.chat.store import ChatStore

logger = logging.getLogger(__name__)

#: Age (seconds) after which a clip folder without a stored conversation is litter; younger ones may belong to
#: a conversation being created (its folder is moved in before its row is written).
LITTER_GRACE_S = 600.0

#: Clip conversation ids as :class:`serving.chat.clips.ClipChats` makes them; only such names are folders.
_CLIP_ID = re.compile(r"clip-[0-9a-f]{32}")


def clip_folder(root: Path, conversation_id: str) -> Path:
    """The folder of a clip conversation's clip under ``root``; ValueError for an id no clip could have (so a
    hostile id never names a path outside ``root``)."""
    if not _CLIP_ID.fullmatch(conversation_id):
        raise ValueError(f"{conversation_id!r} is not a clip conversation id")
    return root / conversation_id


@dataclass
class Retention:
    """Deletes what is over the limits from ``store`` and ``checkpointer`` (the same threads in both)."""

    store: ChatStore
    checkpointer: BaseCheckpointSaver | None
    max_age_s: float
    max_bytes: int
    every_s: float
    #: Where clip conversations keep their clips (None: clip conversations are not stored).
    clip_root: Path | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def forget(self, thread_id: str) -> bool:
        """Delete one conversation or agent thread everywhere; False when nothing was stored under it."""
        if self.clip_root is not None and _CLIP_ID.fullmatch(thread_id) and await self.store.aclip(thread_id):
            # The folder first: a row without its folder is answered "clip gone"; a folder without a row is litter.
            await asyncio.to_thread(shutil.rmtree, clip_folder(self.clip_root, thread_id), True)
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
            litter = await self.remove_litter()
        if doomed:
            logger.info("retention deleted %d conversation(s)/thread(s), %d bytes returned to the disk",
                        len(doomed), freed)
        if litter:
            logger.info("removed %d clip folder(s) no stored conversation names", litter)
        return doomed

    async def remove_litter(self, now: float | None = None) -> int:
        """Delete clip folders under ``clip_root`` with no stored conversation, older than :data:`LITTER_GRACE_S`
        (by modification time); returns how many. Only names a clip id could have are considered."""
        if self.clip_root is None or not self.clip_root.is_dir():
            return 0
        now = time.time() if now is None else now
        removed = 0
        for path in await asyncio.to_thread(lambda: sorted(self.clip_root.iterdir())):  # type: ignore[union-attr]
            if not (_CLIP_ID.fullmatch(path.name) and path.is_dir()) or now - path.stat().st_mtime < LITTER_GRACE_S:
                continue
            try:
                stored = await self.store.aclip(path.name) is not None
            except Exception:  # a damaged row still names its folder: leave both for the user to see
                stored = True
            if not stored:
                await asyncio.to_thread(shutil.rmtree, path, True)
                removed += 1
        return removed

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
