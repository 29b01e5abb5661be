"""One worker thread that owns the model and serves requests in micro-batches.

Callers (threads or asyncio tasks) queue requests and wait on a future. The worker takes the first
request, keeps collecting for at most ``max_wait_s`` or until ``max_batch`` requests are in hand, and
passes the batch to a handler, which resolves every request's future. Requests that arrive together
therefore share one image encoding and one decoder pass, while a lone request waits at most
``max_wait_s`` longer than it would alone.

Some work is **deferrable** (:attr:`Request.deferrable`): nobody is blocked on it yet, e.g. an image
encoded ahead of time to warm the cache while the caller's LLM is still deciding what to look for. A
batch takes the waiting requests that are not deferrable first, with any deferrable ones on the same
image (:meth:`Request.affinity`: they cost nothing more); deferrable requests go in batches of their
own, at most ``max_deferred`` at a time, only when nothing else waits, or once they have waited
``max_defer_s``. So a segment request that concurrent queries are blocked on never waits behind a
backlog of warm-ups, only behind the batch already running, which holds at most ``max_deferred``
of them (one encoder pass).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import ClassVar

from .errors import UsageError

logger = logging.getLogger(__name__)


@dataclass
class Request:
    """Base of the requests a worker serves; ``future`` receives the result or the exception."""

    future: Future = field(default_factory=Future, init=False, repr=False)
    #: When the request was queued (``time.monotonic()``; set by :meth:`MicroBatcher.submit`).
    queued_at: float = field(default=0.0, init=False, repr=False, compare=False)
    #: Work no caller is blocked on yet (see the module docstring); served after the other requests.
    deferrable: ClassVar[bool] = False

    def affinity(self) -> Hashable | None:
        """What this request shares work on (e.g. its image's key); None: nothing."""
        return None


@dataclass
class BatchStats:
    """How the worker has batched so far."""

    batches: int = 0
    requests: int = 0
    largest_batch: int = 0
    #: Seconds the worker spent inside the handler (busy serving batches), summed over batches.
    busy_s: float = 0.0


class MicroBatcher:
    """Serve :class:`Request` objects in batches on one background thread.

    Args:
        handler: called on the worker thread with a list of requests; it must resolve each future
            (an exception that escapes it is set on every unresolved future of the batch).
        max_batch: most requests handed over at once.
        max_wait_s: longest time the first request of a batch waits for company.
        max_deferred: most deferrable requests in a batch of their own (e.g. one encoder pass).
        max_defer_s: a deferrable request waiting longer than this is served like any other.
        name: the thread's name, for logs and debuggers.
        on_start: called once on the worker thread before it serves anything (e.g. per-thread torch settings).
    """

    def __init__(self, handler: Callable[[list[Request]], None], *, max_batch: int = 32,
                 max_wait_s: float = 0.002, max_deferred: int | None = None, max_defer_s: float = 1.0,
                 name: str = "sam3-worker", on_start: Callable[[], None] | None = None) -> None:
        if max_batch < 1 or max_wait_s < 0 or (max_deferred is not None and max_deferred < 1) or max_defer_s < 0:
            raise UsageError("max_batch and max_deferred must be >= 1, max_wait_s and max_defer_s >= 0")
        self._handler = handler
        self._on_start = on_start
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_deferred = min(max_batch, max_deferred or max_batch)
        self.max_defer_s = max_defer_s
        self._pending: deque[Request] = deque()
        self._stats = BatchStats()
        self._closed = False
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, request: Request) -> Future:
        """Queue ``request``; its future resolves when the worker has served it."""
        with self._ready:
            if self._closed:
                raise UsageError("the engine is closed; create a new one")
            request.queued_at = time.monotonic()
            self._pending.append(request)
            self._ready.notify()
        return request.future

    def queue_depth(self) -> int:
        with self._lock:
            return len(self._pending)

    def stats(self) -> BatchStats:
        with self._lock:
            return BatchStats(**vars(self._stats))

    def close(self, timeout: float | None = 10.0) -> None:
        """Finish queued requests, then stop the thread."""
        with self._ready:
            if self._closed:
                return
            self._closed = True
            self._ready.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _choose(self) -> list[Request]:
        """Take the next batch out of ``_pending`` (called with the lock held; see the module docstring)."""
        now = time.monotonic()
        urgent = [r for r in self._pending
                  if not r.deferrable or now - r.queued_at >= self.max_defer_s][: self.max_batch]
        if urgent:
            keys = {r.affinity() for r in urgent} - {None}
            taken = {id(r) for r in urgent}
            riders = [r for r in self._pending if id(r) not in taken and r.affinity() in keys]
            batch = urgent + riders[: self.max_batch - len(urgent)]
        else:
            batch = list(self._pending)[: self.max_deferred]
        chosen = {id(r) for r in batch}
        self._pending = deque(r for r in self._pending if id(r) not in chosen)
        return batch

    def _collect(self) -> list[Request] | None:
        """Wait for the next batch; None once closed and drained."""
        with self._ready:
            while not self._pending and not self._closed:
                self._ready.wait()
            if not self._pending:
                return None
            deadline = time.monotonic() + self.max_wait_s
            while len(self._pending) < self.max_batch and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._ready.wait(remaining)
            batch = self._choose()
            self._stats.batches += 1
            self._stats.requests += len(batch)
            self._stats.largest_batch = max(self._stats.largest_batch, len(batch))
            return batch

    def _run(self) -> None:
        if self._on_start is not None:
            try:
                self._on_start()
            except Exception:  # a setting that cannot be applied must not stop the worker
                logger.exception("the worker's start-up call failed; serving without it")
        while (batch := self._collect()) is not None:
            started = time.perf_counter()
            try:
                self._handler(batch)
            except BaseException as exc:  # the worker must survive anything a batch throws
                logger.exception("batch of %d requests failed", len(batch))
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)
            finally:
                with self._lock:
                    self._stats.busy_s += time.perf_counter() - started
