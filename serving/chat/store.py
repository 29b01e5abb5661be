"""Chat conversations on disk: the image and the turns of each, in SQLite.

The agent's own memory of a conversation (its masks and their ids) is the LangGraph thread, kept by
the graph's checkpointer; the conversation id is the thread id. This store keeps what the checkpointer
does not: the image itself (a thread keeps only its content key) and the transcript the page shows.
With a file path both live in the same SQLite file, so a restarted server continues every
conversation; with ``":memory:"`` they last as long as the process.

Calls are synchronous and short; the async wrappers run them in a worker thread.
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

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
"""


@dataclass(frozen=True)
class Conversation:
    id: str
    created: float
    width: int
    height: int


class ChatStore:
    """Conversations (image + turns) in one SQLite database; safe to share between threads."""

    def __init__(self, path: str = ":memory:") -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, timeout=30.0, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            if path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

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
        """Append a turn; returns its index (0 for the first)."""
        with self._lock:
            (count,) = self._conn.execute("SELECT COUNT(*) FROM chat_turns WHERE conversation_id = ?",
                                          (conversation_id,)).fetchone()
            self._conn.execute("INSERT INTO chat_turns VALUES (?, ?, ?, ?, ?)",
                               (conversation_id, count, time.time(), message, json.dumps(answer)))
        return int(count)

    def turns(self, conversation_id: str) -> list[dict[str, Any]]:
        """Every turn, oldest first: ``{"index", "message", "answer"}``."""
        with self._lock:
            rows = self._conn.execute("SELECT idx, message, answer_json FROM chat_turns WHERE conversation_id = ? "
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
