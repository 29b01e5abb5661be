"""Open video sessions: one transformers inference session per video, with a cap and an idle timeout."""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import UsageError, VideoError
from .frames import FrameSource
from .pixels import PixelFrames
from .retention import HeldTensors, held_tensors

logger = logging.getLogger(__name__)

#: Prompt id given to objects added with points or a box (transformers groups objects by prompt id).
CLICK_PROMPT_ID = -1


@dataclass
class VideoSession:
    """One open video and its tracking state.

    Attributes:
        session_id: the id handed to callers.
        source: the decoded video (frames on demand).
        pixels: the model-ready frames (lazy, stands in for transformers' ``processed_frames``).
        state: the ``Sam3VideoInferenceSession`` holding prompts, objects and memories.
        pinned: ids of objects the user prompted with points or a box (never removed by heuristics).
        hidden: ids dropped by duplicate suppression or :meth:`VideoEngine.remove_object`.
        last_used: clock time of the last call that used the session.
    """

    session_id: str
    source: FrameSource
    pixels: PixelFrames
    state: object
    last_used: float
    pinned: set[int] = field(default_factory=set)
    hidden: set[int] = field(default_factory=set)

    @property
    def frame_size(self) -> tuple[int, int]:
        return (self.source.height, self.source.width)

    @property
    def phrases(self) -> dict[int, str]:
        """Prompt id -> phrase."""
        return dict(self.state.prompts)

    def object_groups(self) -> dict[int, int]:
        """Object id -> prompt id (:data:`CLICK_PROMPT_ID` for clicked objects)."""
        return dict(self.state.obj_id_to_prompt_id)

    def object_ids(self) -> list[int]:
        """Ids of the objects currently tracked (hidden ones excluded)."""
        return [i for i in self.state.obj_ids if i not in self.hidden]

    def held(self) -> HeldTensors:
        """Tensors the session holds now (memories, cached features and pixels, prompt embeddings)."""
        return held_tensors((self.state, self.pixels))

    def close(self) -> None:
        self.pixels.clear()
        self.source.close()
        self.state = None


class SessionRegistry:
    """Open sessions by id; at most ``max_sessions``, and sessions idle for ``idle_timeout_s`` are closed.

    Expiry is checked on every registry call (no background thread), with ``clock`` giving the time.
    """

    def __init__(self, max_sessions: int, idle_timeout_s: float, clock: Callable[[], float]) -> None:
        if max_sessions < 1:
            raise UsageError(f"max_sessions must be >= 1, got {max_sessions}")
        self.max_sessions = max_sessions
        self.idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._sessions: OrderedDict[str, VideoSession] = OrderedDict()
        self._expired: deque[str] = deque(maxlen=256)

    def new_id(self) -> str:
        return uuid.uuid4().hex[:16]

    def now(self) -> float:
        return self._clock()

    def add(self, session: VideoSession) -> None:
        """Register ``session``; :class:`UsageError` when ``max_sessions`` are open and none is idle."""
        self.expire_idle()
        if len(self._sessions) >= self.max_sessions:
            session.close()
            raise UsageError(f"{len(self._sessions)} video sessions are open, the most this engine allows "
                             f"(max_sessions={self.max_sessions}); close one with close_session first")
        self._sessions[session.session_id] = session

    def get(self, session_id: str) -> VideoSession:
        """The open session ``session_id``, marked as used now; :class:`VideoError` if unknown or expired."""
        self.expire_idle()
        session = self._sessions.get(session_id) if isinstance(session_id, str) else None
        if session is None:
            if session_id in self._expired:
                raise VideoError(f"video session {session_id!r} was closed after being idle for more than "
                                 f"{self.idle_timeout_s:g} s; start a new one")
            raise VideoError(f"unknown video session {session_id!r}; start one with start_session")
        session.last_used = self._clock()
        self._sessions.move_to_end(session_id)
        return session

    def remove(self, session_id: str) -> None:
        """Close and forget ``session_id``; :class:`VideoError` if it is not open."""
        session = self.get(session_id)
        del self._sessions[session_id]
        session.close()

    def expire_idle(self) -> list[str]:
        """Close sessions idle for longer than the timeout; returns their ids."""
        now = self._clock()
        stale = [sid for sid, s in self._sessions.items() if now - s.last_used > self.idle_timeout_s]
        for session_id in stale:
            self._sessions.pop(session_id).close()
            self._expired.append(session_id)
            logger.info("closed video session %s after %.0f s idle", session_id, self.idle_timeout_s)
        return stale

    def ids(self) -> list[str]:
        self.expire_idle()
        return list(self._sessions)

    def close_all(self) -> None:
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()

    def __len__(self) -> int:
        return len(self._sessions)
