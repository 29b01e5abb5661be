"""Chat conversations on disk: the image and the turns of each, in SQLite.

The agent's own memory of a conversation (its masks and their ids) is the LangGraph thread, kept by
the graph's checkpointer; the conversation id is the thread id. This store keeps what the checkpointer
does not: the image itself (a thread keeps only its content key) and the transcript the page shows.
With a file path both live in the same SQLite file, so a restarted server continues every
conversation; with ``":memory:"`` they last as long as the process.

Calls are synchronous and short; the async wrappers run them in a worker thread. Turn numbers are
taken inside a write transaction, so several server processes may share one file. ``state_threads``
records when each conversation or agent thread was last used, for retention
(:mod:`serving.chat.retention`); :meth:`ChatStore.probe` tells readiness whether the file still works.

Clip conversations (:mod:`serving.chat.clips`) have tables of their own: the clip's plan, the masklet
tracks of the thread (JSON, replaced with every turn) and the transcript; the clip's sampled frames stay
in a folder next to the database, whose size is stored with the row so retention counts it.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chat_conversations (
    id TEXT PRIMARY KEY, created REAL NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    image_png BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS chat_turns (
    conversation_id TEXT NOT NULL REFERENCES chat_conversations(id), idx INTEGER NOT NULL,
    created REAL NOT NULL, message TEXT NOT NULL, answer_json TEXT NOT NULL,
    PRIMARY KEY (conversation_id, idx)
);
CREATE TABLE IF NOT EXISTS state_threads (thread_id TEXT PRIMARY KEY, last_used REAL NOT NULL);
CREATE TABLE IF NOT EXISTS clip_conversations (
    id TEXT PRIMARY KEY, created REAL NOT NULL, name TEXT NOT NULL, plan_json TEXT NOT NULL,
    folder_bytes INTEGER NOT NULL, masklets_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS clip_turns (
    conversation_id TEXT NOT NULL REFERENCES clip_conversations(id), idx INTEGER NOT NULL,
    created REAL NOT NULL, message TEXT NOT NULL, answer_json TEXT NOT NULL,
    PRIMARY KEY (conversation_id, idx)
);
"""
#: Bytes each stored thread holds, by table: (table, id column, size expression). The checkpoint tables are
#: LangGraph's SQLite checkpointer's, present when it shares the file.
_SIZES = (("chat_conversations", "id", "LENGTH(image_png)"),
          ("chat_turns", "conversation_id", "LENGTH(message) + LENGTH(answer_json)"),
          ("clip_conversations", "id", "LENGTH(plan_json) + LENGTH(masklets_json) + folder_bytes"),
          ("clip_turns", "conversation_id", "LENGTH(message) + LENGTH(answer_json)"),
          ("checkpoints", "thread_id", "LENGTH(checkpoint) + LENGTH(metadata)"),
          ("writes", "thread_id", "LENGTH(value)"))


@dataclass(frozen=True)
class Conversation:
    id: str
    created: float
    width: int
    height: int


@dataclass(frozen=True)
class ClipRow:
    """A stored clip conversation: ``plan`` is the clip plan as JSON (its video relative to the clip folder),
    ``folder_bytes`` what the clip folder holds on disk (counted by retention's size limit)."""

    id: str
    created: float
    name: str
    plan: dict[str, Any]
    folder_bytes: int


class ChatStore:
    """Conversations (image + turns) in one SQLite database; safe to share between threads."""

    def __init__(self, path: str = ":memory:") -> None:
        self._path = path
        self._conn = sqlite3.connect(path, check_same_thread=False, timeout=30.0, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            if path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)
            if path != ":memory:":
                self._use_incremental_vacuum()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _use_incremental_vacuum(self) -> None:
        """Make deleted pages returnable to the file system (:meth:`reclaim`).

        SQLite keeps the pages of deleted rows in the file for reuse, so without this the file never
        shrinks below its largest size however much retention deletes. The mode can only be switched by
        one full VACUUM: cheap for a new file, once for a file written by an older server.
        """
        if self._conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
            return
        self._conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        try:
            self._conn.execute("VACUUM")
        except sqlite3.OperationalError as exc:  # another process holds the file: try again next start
            logger.warning("could not switch %s to incremental vacuum (%s); deleted data stays in the file",
                           self._path, exc)

    def reclaim(self) -> int:
        """Return the pages of deleted rows to the file system; the bytes freed (0 in memory)."""
        if self._path == ":memory:":
            return 0
        with self._lock:
            page_size = self._conn.execute("PRAGMA page_size").fetchone()[0]
            free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
            if free:
                # executescript steps the pragma to its end; execute() would free one page per step.
                self._conn.executescript("PRAGMA incremental_vacuum;")
                # In WAL mode the file only shrinks when the WAL is written back into it.
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return int(free) * int(page_size)

    # -- sync API ------------------------------------------------------------------------------------

    def create(self, pixels: np.ndarray) -> Conversation:
        """A new conversation about ``pixels`` (stored losslessly, so its content key never changes)."""
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        conversation = Conversation(f"chat-{uuid.uuid4().hex}", time.time(), int(pixels.shape[1]),
                                    int(pixels.shape[0]))
        with self._lock:
            self._conn.execute("INSERT INTO chat_conversations VALUES (?, ?, ?, ?, ?)",
                               (conversation.id, conversation.created, conversation.width, conversation.height,
                                buffer.getvalue()))
            self._touch(conversation.id)
        return conversation

    def get(self, conversation_id: str) -> Conversation | None:
        with self._lock:
            row = self._conn.execute("SELECT id, created, width, height FROM chat_conversations WHERE id = ?",
                                     (conversation_id,)).fetchone()
        return Conversation(*row) if row else None

    def image_png(self, conversation_id: str) -> bytes | None:
        with self._lock:
            row = self._conn.execute("SELECT image_png FROM chat_conversations WHERE id = ?",
                                     (conversation_id,)).fetchone()
        return bytes(row[0]) if row else None

    def add_turn(self, conversation_id: str, message: str, answer: dict[str, Any]) -> int:
        """Append a turn; returns its index (0 for the first).

        The index is read and the turn written in one write transaction, so servers (processes) sharing
        the file never number two turns alike.
        """
        index = self._append_turn("chat_turns", conversation_id, message, answer)
        assert index is not None
        return index

    def _append_turn(self, table: str, conversation_id: str, message: str, answer: dict[str, Any],
                     masklets: dict[str, Any] | None = None) -> int | None:
        """Append a turn to ``table`` in one write transaction (and, for a clip, its masklet tracks); the index,
        or None when ``masklets`` is given and the clip conversation is gone."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if masklets is not None and not self._conn.execute(
                        "UPDATE clip_conversations SET masklets_json = ? WHERE id = ?",
                        (json.dumps(masklets), conversation_id)).rowcount:
                    self._conn.execute("ROLLBACK")
                    return None
                (index,) = self._conn.execute(f"SELECT COALESCE(MAX(idx) + 1, 0) FROM {table} "
                                              "WHERE conversation_id = ?", (conversation_id,)).fetchone()
                self._conn.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?)",
                                   (conversation_id, index, time.time(), message, json.dumps(answer)))
                self._touch(conversation_id)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return int(index)

    # -- clip conversations (the clip itself is a folder next to the database, see serving.chat.clips) ---------

    def create_clip(self, conversation_id: str, name: str, plan: dict[str, Any], folder_bytes: int) -> float:
        """Store a new clip conversation (no masklets, no turns yet); returns its creation time."""
        created = time.time()
        with self._lock:
            self._conn.execute("INSERT INTO clip_conversations VALUES (?, ?, ?, ?, ?, '{}')",
                               (conversation_id, created, name, json.dumps(plan), int(folder_bytes)))
            self._touch(conversation_id)
        return created

    def clip(self, conversation_id: str) -> ClipRow | None:
        """The clip conversation (without its masklets and turns), or None."""
        with self._lock:
            row = self._conn.execute("SELECT id, created, name, plan_json, folder_bytes FROM clip_conversations "
                                     "WHERE id = ?", (conversation_id,)).fetchone()
        return ClipRow(row[0], row[1], row[2], json.loads(row[3]), row[4]) if row else None

    def clip_masklets(self, conversation_id: str) -> dict[str, Any] | None:
        """The masklet tracks saved with the conversation's last message (``MaskletStore.to_json``), or None."""
        with self._lock:
            row = self._conn.execute("SELECT masklets_json FROM clip_conversations WHERE id = ?",
                                     (conversation_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def save_clip_masklets(self, conversation_id: str, masklets: dict[str, Any]) -> bool:
        """Replace the conversation's masklet tracks; False when it is gone."""
        with self._lock:
            return bool(self._conn.execute("UPDATE clip_conversations SET masklets_json = ? WHERE id = ?",
                                           (json.dumps(masklets), conversation_id)).rowcount)

    def add_clip_turn(self, conversation_id: str, message: str, answer: dict[str, Any],
                      masklets: dict[str, Any]) -> int | None:
        """Append a turn and save the masklet tracks with it (one transaction); its index, or None when the
        conversation was deleted meanwhile."""
        return self._append_turn("clip_turns", conversation_id, message, answer, masklets)

    def clip_turns(self, conversation_id: str) -> list[dict[str, Any]]:
        """Every turn of a clip conversation, oldest first: ``{"index", "message", "answer"}``."""
        return self._read_turns("clip_turns", conversation_id)

    # -- retention -----------------------------------------------------------------------------------

    def _touch(self, thread_id: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO state_threads VALUES (?, ?)", (thread_id, time.time()))

    def touch(self, thread_id: str) -> None:
        """Note that a conversation or agent thread was just used (retention counts age from here)."""
        with self._lock:
            self._touch(thread_id)

    def delete(self, thread_id: str) -> bool:
        """Forget a conversation (image or clip, and its turns) and the thread's bookkeeping; False if none was
        stored. The caller deletes the thread's checkpoints (the checkpointer owns them) and a clip's folder."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                found = 0
                for table, column in (("chat_turns", "conversation_id"), ("chat_conversations", "id"),
                                      ("clip_turns", "conversation_id"), ("clip_conversations", "id")):
                    found += self._conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (thread_id,)).rowcount
                found += self._conn.execute("DELETE FROM state_threads WHERE thread_id = ?", (thread_id,)).rowcount
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return found > 0

    def _sizes(self) -> dict[str, int]:
        tables = {row[0] for row in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        sizes: dict[str, int] = {}
        for table, column, size in _SIZES:
            if table in tables:
                query = f"SELECT {column}, SUM({size}) FROM {table} GROUP BY {column}"
                for thread_id, nbytes in self._conn.execute(query):
                    sizes[thread_id] = sizes.get(thread_id, 0) + int(nbytes or 0)
        return sizes

    def expired(self, max_age_s: float, max_bytes: int, now: float | None = None) -> list[str]:
        """Threads to delete: those unused for ``max_age_s``, then the least recently used until the rest
        hold at most ``max_bytes``. Threads stored without bookkeeping (older servers) are adopted as new."""
        now = time.time() if now is None else now
        with self._lock:
            sizes = self._sizes()
            used = dict(self._conn.execute("SELECT thread_id, last_used FROM state_threads").fetchall())
            for thread_id in sizes.keys() - used.keys():
                self._conn.execute("INSERT OR IGNORE INTO state_threads VALUES (?, ?)", (thread_id, now))
                used[thread_id] = now
        doomed = [t for t, last in used.items() if last < now - max_age_s]
        kept = sorted((t for t in used if t not in set(doomed)), key=lambda t: used[t])
        total = sum(sizes.get(t, 0) for t in kept)
        while kept and total > max_bytes:
            oldest = kept.pop(0)
            total -= sizes.get(oldest, 0)
            doomed.append(oldest)
        return doomed

    def probe(self) -> str:
        """'' when the database file can be opened, read and written; else what is wrong (no path in it).

        Opens a fresh connection, so damage to the file made after start-up is seen."""
        if self._path == ":memory:":
            return ""
        try:
            with open(self._path, "rb") as handle:  # pages cached in the WAL would hide a damaged header
                header = handle.read(16)
            if header and header != b"SQLite format 3\x00":
                return "the file is not an SQLite database (its header is damaged)"
            conn = sqlite3.connect(self._path, timeout=0.5, isolation_level=None)
            try:
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT OR REPLACE INTO state_threads VALUES ('', 0)")
                conn.execute("ROLLBACK")
            finally:
                conn.close()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return ""  # another writer holds the lock: the file works, it is just busy
            return f"{type(exc).__name__}: {exc}"
        except (sqlite3.Error, OSError) as exc:
            return f"{type(exc).__name__}: {exc.strerror if isinstance(exc, OSError) else exc}"
        return ""

    def turns(self, conversation_id: str) -> list[dict[str, Any]]:
        """Every turn, oldest first: ``{"index", "message", "answer"}``."""
        return self._read_turns("chat_turns", conversation_id)

    def _read_turns(self, table: str, conversation_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(f"SELECT idx, message, answer_json FROM {table} WHERE conversation_id = ? "
                                      "ORDER BY idx", (conversation_id,)).fetchall()
        return [{"index": idx, "message": message, "answer": json.loads(answer)} for idx, message, answer in rows]

    # -- async wrappers ------------------------------------------------------------------------------

    async def acreate(self, pixels: np.ndarray) -> Conversation:
        return await asyncio.to_thread(self.create, pixels)

    async def aget(self, conversation_id: str) -> Conversation | None:
        return await asyncio.to_thread(self.get, conversation_id)

    async def aimage_png(self, conversation_id: str) -> bytes | None:
        return await asyncio.to_thread(self.image_png, conversation_id)

    async def aadd_turn(self, conversation_id: str, message: str, answer: dict[str, Any]) -> int:
        return await asyncio.to_thread(self.add_turn, conversation_id, message, answer)

    async def aturns(self, conversation_id: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.turns, conversation_id)

    async def acreate_clip(self, conversation_id: str, name: str, plan: dict[str, Any], folder_bytes: int) -> float:
        return await asyncio.to_thread(self.create_clip, conversation_id, name, plan, folder_bytes)

    async def aclip(self, conversation_id: str) -> ClipRow | None:
        return await asyncio.to_thread(self.clip, conversation_id)

    async def aclip_masklets(self, conversation_id: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.clip_masklets, conversation_id)

    async def aclip_turns(self, conversation_id: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.clip_turns, conversation_id)

    async def atouch(self, thread_id: str) -> None:
        await asyncio.to_thread(self.touch, thread_id)

    async def adelete(self, thread_id: str) -> bool:
        return await asyncio.to_thread(self.delete, thread_id)

    async def aexpired(self, max_age_s: float, max_bytes: int) -> list[str]:
        return await asyncio.to_thread(self.expired, max_age_s, max_bytes)

    async def areclaim(self) -> int:
        return await asyncio.to_thread(self.reclaim)

    async def aprobe(self) -> str:
        return await asyncio.to_thread(self.probe)
