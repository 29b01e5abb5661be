"""Evaluation runs spread over a Ray cluster: actors answer samples, the driver alone keeps the run folder.

::

    report = await run_eval_ray(task, "runs/ol-val", EngineSpec("facebook/sam3", device="cuda"), llm,
                                sam3_model="facebook/sam3", settings=AgentSettings(),
                                options=RunOptions(concurrency=8),
                                ray_options=RayOptions(address="auto", workers=8, gpus_per_worker=1))

Each of ``workers`` Ray actors loads its own SAM 3 engine (one GPU each with ``gpus_per_worker=1``,
or CPU threads), its own copy of the task and, for the agent planner, its own LLM client: actor ``i``
uses ``llm_urls[i % len(llm_urls)]`` when several endpoints are given, so each gets its share. The
driver sends sample ids, ``options.concurrency`` in flight per actor; an actor answers and scores
a sample exactly as :mod:`eval.runner` does (same code) and returns the record. Only the driver
writes ``predictions.jsonl`` and ``run.json``, so resuming (with or without Ray), configuration checks
and ``eval score`` work as for a single-process run.

When an actor dies (its node lost, the process killed, out of memory), every sample it had in flight
is put back at the front of the queue and a fresh actor takes its place (at most
``max_worker_restarts`` times in all); a sample is written once, when its record arrives, so none is
lost or written twice. Ray is an optional dependency (``pip install 'sam3-agent[ray]'``); on a
cluster, every node needs this package and the model files.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eval.records import PredictionLog, prepare_run_dir
from eval.report import score_run
from eval.runner import Progress, RunOptions, checked_planner, run_config
from eval.tasks import EvalItem, Task, TaskSpec
from sam3_core.errors import RunFailed, UsageError

if TYPE_CHECKING:
    from agent.llm import LLMConfig
    from eval.planners import PlannerSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSpec:
    """How each actor loads SAM 3: checkpoint, device, dtype; ``video`` for the video engine (with its options)."""

    model: str
    device: str | None = None
    dtype: str | None = None
    video: bool = False
    video_options: Any = None

    def load(self) -> Any:
        """The engine (a :class:`~sam3_core.engine.Sam3Engine` or a video engine)."""
        if self.video:
            from sam3_core.video.engine import VideoEngine

            return VideoEngine.from_pretrained(self.model, self.device, self.dtype, options=self.video_options)
        from sam3_core.engine import Sam3Engine

        return Sam3Engine.from_pretrained(self.model, self.device, self.dtype, with_tracker=False)


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run.

    Attributes:
        address: a running cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``); None starts a
            local Ray instance (or uses the one this process already started).
        workers: actors, each with one engine.
        cpus_per_worker / gpus_per_worker: Ray resources of each actor (CPU actors also limit torch to
            that many threads).
        llm_urls: LLM endpoints shared out among the actors (empty: every actor uses the run's URL).
        max_worker_restarts: replacements of dead actors before the run gives up.
    """

    address: str | None = None
    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    llm_urls: tuple[str, ...] = ()
    max_worker_restarts: int = 4

    def __post_init__(self) -> None:
        if self.workers < 1 or self.cpus_per_worker < 0 or self.gpus_per_worker < 0 or self.max_worker_restarts < 0:
            raise UsageError("ray: workers must be >= 1; resources and max_worker_restarts >= 0")


class EvalWorker:
    """The actor: one engine, the task's items by id, and the runner's per-sample code."""

    def __init__(self, spec: Mapping[str, Any], engine_spec: EngineSpec, llm: LLMConfig | None,
                 settings: PlannerSettings, threads: int) -> None:
        import torch

        from eval.runner import _Run
        from eval.tasks import load_task

        logging.basicConfig(level=logging.WARNING)
        if threads > 0 and (engine_spec.device or "cpu").startswith("cpu"):
            torch.set_num_threads(threads)
        task = load_task(TaskSpec.from_dict(spec))
        self._items = {item.id: item for item in task.items()}
        self._llm = llm
        self._stack = contextlib.AsyncExitStack()
        self._run = _Run(task, engine_spec.load(), None, settings, log=None, progress=None, scored=[])  # type: ignore[arg-type]

    async def answer(self, item_id: str) -> dict[str, Any]:
        """The scored record of one sample (never raises for agent or LLM failures)."""
        from agent.llm import LLMClient
        from eval.runner import _run_sample

        if self._llm is not None and self._run.client is None:
            self._run.client = await self._stack.enter_async_context(LLMClient(self._llm))
        return await _run_sample(self._run, self._items[item_id])

    def pid(self) -> int:
        import os

        return os.getpid()


class RayPool:
    """The live actors; :meth:`replace` starts a fresh one in a dead one's place."""

    def __init__(self, make: Callable[[int], Any], kill: Callable[[Any], None], workers: int, restarts: int) -> None:
        self._make, self._kill = make, kill
        self.actors: list[Any] = [make(i) for i in range(workers)]
        self.alive = [True] * workers
        self.restarts_left = restarts

    def replace(self, index: int) -> None:
        """Mark actor ``index`` dead and start another in its slot if the restart budget allows."""
        if not self.alive[index]:
            return
        self.alive[index] = False
        with contextlib.suppress(Exception):  # an unreachable actor may still hold a GPU: make sure it goes
            self._kill(self.actors[index])
        if self.restarts_left > 0:
            self.restarts_left -= 1
            self.actors[index] = self._make(index)
            self.alive[index] = True
            logger.warning("Ray worker %d died; started a replacement (%d restarts left)", index, self.restarts_left)
        else:
            logger.warning("Ray worker %d died; no restarts left", index)


def _connect(options: RayOptions) -> Any:
    try:
        import ray
    except ImportError as exc:
        raise UsageError("--ray needs Ray: pip install 'sam3-agent[ray]'") from exc
    if not ray.is_initialized():
        ray.init(address=options.address, include_dashboard=False, logging_level=logging.WARNING)
    return ray


def _actor_factory(ray: Any, task: Task, engine_spec: EngineSpec, llm: LLMConfig | None,
                   settings: PlannerSettings, options: RunOptions, ray_options: RayOptions) -> Callable[[int], Any]:
    remote = ray.remote(EvalWorker)
    threads = max(1, int(ray_options.cpus_per_worker))

    def make(index: int) -> Any:
        worker_llm = llm
        if llm is not None and ray_options.llm_urls:
            worker_llm = dataclasses.replace(llm, base_url=ray_options.llm_urls[index % len(ray_options.llm_urls)])
        return remote.options(num_cpus=ray_options.cpus_per_worker, num_gpus=ray_options.gpus_per_worker,
                              max_concurrency=options.concurrency).remote(
            task.spec.to_dict(), engine_spec, worker_llm, settings, threads)

    return make


async def _dispatch(pool: RayPool, todo: list[EvalItem], slots: int,
                    on_record: Callable[[dict[str, Any]], None]) -> None:
    """Keep every live actor ``slots`` samples busy until all are answered; re-queue a dead actor's samples."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    queue: deque[EvalItem] = deque(todo)
    in_flight: dict[asyncio.Future, tuple[int, Any, EvalItem]] = {}
    load = [0] * len(pool.actors)
    while queue or in_flight:
        for index, actor in enumerate(pool.actors):
            while pool.alive[index] and queue and load[index] < slots:
                item = queue.popleft()
                future = asyncio.ensure_future(_await(actor.answer.remote(item.id)))
                in_flight[future] = (index, actor, item)
                load[index] += 1
        if not in_flight:
            raise RunFailed("every Ray worker died and no restarts are left", cause="ray_workers_lost")
        done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        for future in done:
            index, actor, item = in_flight.pop(future)
            if pool.actors[index] is actor:
                load[index] -= 1
            error = future.exception()
            if error is None:
                on_record(future.result())
            elif isinstance(error, (RayActorError, ActorDiedError, ActorUnavailableError)):
                logger.warning("sample %s: its Ray worker died (%s); queued again", item.id, str(error)[:300])
                queue.appendleft(item)
                if pool.actors[index] is actor:  # the first failure seen from this actor: replace it
                    pool.replace(index)
                    load[index] = 0  # its other samples come back as failures and are queued again
            else:
                raise error


async def _await(ref: Any) -> Any:
    return await ref


async def run_eval_ray(task: Task, run_dir: str | Path, engine_spec: EngineSpec, llm: LLMConfig | None, *,
                       sam3_model: str, settings: PlannerSettings, options: RunOptions | None = None,
                       ray_options: RayOptions | None = None,
                       on_record: Callable[[dict[str, Any], RayPool], None] | None = None) -> dict[str, Any]:
    """Run (or resume) ``task`` into ``run_dir`` on Ray actors and write the report; returns the report.

    Same arguments and run folder as :func:`eval.runner.run_eval`, with ``engine_spec`` in place of an
    engine (each actor loads its own). ``on_record(record, pool)`` is called on the driver after each
    record is written (tests use it to kill a worker mid-run). Raises what ``run_eval`` raises, and
    :class:`RunFailed` when every worker died.
    """
    options, ray_options = options or RunOptions(), ray_options or RayOptions()
    settings, llm = checked_planner(task, settings, llm)
    items = task.items()[: options.limit] if options.limit is not None else task.items()
    model = await _model_name(llm)
    runtime = {"concurrency": options.concurrency, "limit": options.limit,
               "ray": {"address": ray_options.address, "workers": ray_options.workers}}
    prepare_run_dir(run_dir, run_config(task, sam3_model, llm, model, settings, runtime))
    ray = _connect(ray_options)
    with PredictionLog.open(run_dir) as log:
        scored = [r for r in log.records if r["id"] in {item.id for item in items}]
        todo = [item for item in items if item.id not in log]
        logger.info("%s %s: %d queries, %d already done, %d to run on %d Ray workers", task.spec.dataset,
                    task.spec.split, len(items), len(scored), len(todo), ray_options.workers)
        progress = Progress(len(items), len(scored), options.progress, task.progress_name)
        pool = RayPool(_actor_factory(ray, task, engine_spec, llm, settings, options, ray_options), ray.kill,
                       ray_options.workers, ray_options.max_worker_restarts)

        def write(record: dict[str, Any]) -> None:
            if record["id"] in log:  # cannot happen (one dispatch at a time per sample); never write twice
                logger.warning("sample %s answered twice; the first record is kept", record["id"])
                return
            log.append(record)
            scored.append(record)
            progress.update(task.progress_value(scored) if progress.active else None)
            if on_record is not None:
                on_record(record, pool)

        try:
            if todo:
                await _dispatch(pool, todo, options.concurrency, write)
        finally:
            progress.close()
            for actor in pool.actors:
                with contextlib.suppress(Exception):
                    ray.kill(actor)
    return await asyncio.to_thread(score_run, run_dir, task, options.worst_k)


async def _model_name(llm: LLMConfig | None) -> str:
    """The LLM's model name as the endpoint reports it ("" for the direct planner)."""
    if llm is None:
        return ""
    if llm.model:
        return llm.model
    from agent.llm import LLMClient

    async with LLMClient(llm) as client:
        return await client.model_name()
