"""One worker thread that owns the model and serves requests in micro-batches.

Callers (threads or asyncio tasks) put requests on a queue and wait on a future. The worker takes
the first request, keeps collecting for at most ``max_wait_s`` or until ``max_batch`` requests are
in hand, and passes the batch to a handler, which resolves every request's future. Requests that
arrive together therefore share one image encoding and one decoder pass, while a lone request
waits at most ``max_wait_s`` longer than it would alone.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from .errors import UsageError

logger = logging.getLogger(__name__)


@dataclass
class Request:
    """Base of the requests a worker serves; ``future`` receives the result or the exception."""

    future: Future = field(default_factory=Future, init=False, repr=False)


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
        name: the thread's name, for logs and debuggers.
    """

    _STOP = object()

    def __init__(self, handler: Callable[[list[Request]], None], *, max_batch: int = 32,
                 max_wait_s: float = 0.002, name: str = "sam3-worker") -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise UsageError("max_batch must be >= 1 and max_wait_s >= 0")
        self._handler = handler
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: queue.Queue = queue.Queue()
        self._stats = BatchStats()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, request: Request) -> Future:
        """Queue ``request``; its future resolves when the worker has served it."""
        with self._lock:
            if self._closed:
                raise UsageError("the engine is closed; create a new one")
            self._queue.put(request)
        return request.future

    def queue_depth(self) -> int:
        return self._queue.qsize()

    def stats(self) -> BatchStats:
        with self._lock:
            return BatchStats(**vars(self._stats))

    def close(self, timeout: float | None = 10.0) -> None:
        """Finish queued requests, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(self._STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _collect(self, first: Request) -> tuple[list[Request], bool]:
        batch, stop = [first], False
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                # Take whatever is already queued without waiting; wait only while time is left.
                remaining = deadline - time.monotonic()
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is self._STOP:
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is self._STOP:
                break
            batch, stop = self._collect(first)
            with self._lock:
                self._stats.batches += 1
                self._stats.requests += len(batch)
                self._stats.largest_batch = max(self._stats.largest_batch, len(batch))
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
        # Drain anything that raced with close() so no caller waits forever.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not self._STOP and not item.future.done():
                item.future.set_exception(UsageError("the engine was closed before this request ran"))
