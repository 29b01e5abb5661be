"""A worker thread that owns an in-process model and batches the requests of concurrent queries.

Requests wait in a queue; the worker takes up to ``LLMConfig.local_max_batch`` of them at once and hands
those with the same temperature to :meth:`QueuedBackend.generate` as one batch. The event loop never
blocks on the model: each request awaits its own future.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sam3_core.errors import RunFailed, UsageError

if TYPE_CHECKING:
    from agent.backends.base import Completion
    from agent.llm import LLMConfig, Usage

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    request: dict[str, Any]
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


class QueuedBackend:
    """Base of the in-process backends: subclasses implement :meth:`load` and :meth:`generate`."""

    def __init__(self, description: str, target: str, config: LLMConfig) -> None:
        self.description = description
        self.target = target
        self.config = config
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._load_error: BaseException | None = None
        self.batches: list[int] = []  # batch sizes run, for tests and benchmarks

    def load(self) -> None:
        """Load the model (called by the worker before the first batch unless called earlier)."""
        raise NotImplementedError

    def generate(self, requests: list[dict[str, Any]]) -> list[Completion]:
        """One completion per request, as one batch (all with the same temperature); blocking."""
        raise NotImplementedError

    async def model_name(self) -> str:
        """The model id or folder of the spec."""
        return self.target

    async def complete(self, request: dict[str, Any], usage: Usage) -> Completion:
        """Queue ``request`` for the worker and wait for its completion."""
        with self._start_lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, name=self.description, daemon=True)
                self._worker.start()
        job = _Job(request)
        self._jobs.put(job)
        try:
            return await asyncio.wrap_future(job.future)
        except RunFailed:
            usage.failures += 1
            raise

    async def aclose(self) -> None:
        """Stop the worker thread (the model is freed with this object)."""
        if self._worker is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._worker.join, 60)
            self._worker = None

    def _serve(self) -> None:
        try:
            self.load()
        except BaseException as exc:
            self._load_error = exc
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch = [job]
            while len(batch) < self.config.local_max_batch:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)
                    break
                batch.append(more)
            self._run_groups(batch)

    def _run_groups(self, batch: list[_Job]) -> None:
        if self._load_error is not None:
            for job in batch:
                job.future.set_exception(self._load_error)
            return
        groups: dict[float, list[_Job]] = {}
        for job in batch:
            groups.setdefault(float(job.request.get("temperature") or 0.0), []).append(job)
        for jobs in groups.values():
            try:
                results = self.generate([j.request for j in jobs])
            except (UsageError, RunFailed) as exc:
                for job in jobs:
                    job.future.set_exception(exc)
                continue
            except Exception as exc:
                logger.exception("in-process generation failed")
                failed = RunFailed(f"in-process model {self.target} failed: {exc}", cause="llm_bad_response")
                for job in jobs:
                    job.future.set_exception(failed)
                continue
            self.batches.append(len(jobs))
            for job, result in zip(jobs, results):
                job.future.set_result(result)
