"""Running the agent over a benchmark: many queries at once, every result saved as it completes.

::

    task = load_task(TaskSpec("reasonseg", "/data/reason_seg/ReasonSeg", "val"))
    report = await run_eval(task, "runs/rs-val", engine, LLMConfig(base_url=...), sam3_model="facebook/sam3",
                            settings=AgentSettings(), options=RunOptions(concurrency=16))
    # the "SAM 3 alone" baseline: no LLM (see eval.planners)
    report = await run_eval(task, "runs/rs-val-direct", engine, None, sam3_model="facebook/sam3",
                            settings=DirectSettings(score_threshold=0.5))

The type of ``settings`` picks the planner: :class:`~agent.state.AgentSettings` runs the agent,
:class:`~eval.planners.DirectSettings` runs SAM 3 alone on the query's noun phrase; ``run.json``
records which (``"planner"``), so a run never resumes with the other one.

Up to ``concurrency`` agents run at once (an :class:`asyncio.Semaphore`), all sharing one
:class:`~sam3_core.engine.Sam3Engine` (whose worker batches their SAM 3 calls), one
:class:`~agent.llm.LLMClient` and one compiled agent graph (each query on its own thread, deleted from
the graph's in-memory checkpointer when the query ends, so a long run does not grow). With
``RunOptions(ramp=True)`` the agent's first ``concurrency`` queries start one after another
(:func:`ramp_spacing` apart) instead of all at once: queries started together run in lock-step when the
LLM's latency is fixed (every LLM call of the wave comes back together, its SAM 3 calls meet in one batch,
then the SAM 3 worker idles while they all wait for the LLM again), and a ramp splits them into groups
that take turns. Off by default: on a 2-core CPU box it did split the waves (segment batches of 5-11
instead of 14-16) but gained no throughput (``python -m bench.eval --compare-ramp``), since smaller
batches cost SAM 3 more per query. Each finished
sample is scored and appended to ``predictions.jsonl`` (see :mod:`eval.records`); samples already
there are skipped, so a killed run resumes where it stopped; a second run on a folder in use is refused
(:mod:`eval.run_lock`). A sample whose agent run raises (the LLM
timed out, the endpoint failed) or ends without an answer is recorded with its status and cause,
scored as an empty prediction, and the run goes on. At the end :func:`eval.report.score_run` writes
the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph

from agent.graph import build_graph
from agent.llm import LLMClient, LLMConfig, Usage
from agent.runner import AgentAnswer, run_agent
from agent.settings import AgentSettings
from eval.planners import DirectSettings, planner_name
from eval.records import FORMAT_VERSION, PredictionLog, prepare_run_dir
from eval.report import score_run
from eval.run_lock import locked_run_dir
from eval.tasks import EvalItem, Task
from sam3_core.engine import Sam3Engine
from sam3_core.errors import RunFailed, Sam3AgentError, UsageError
from sam3_core.postprocess import masks_to_rle

if TYPE_CHECKING:
    from eval.planners import PlannerSettings

logger = logging.getLogger(__name__)

NO_MASKS = np.zeros((0, 1, 1), dtype=bool)


@dataclass(frozen=True)
class RunOptions:
    """How to run (none of these change the results): parallel queries, a sample limit, display."""

    concurrency: int = 8
    limit: int | None = None
    progress: bool = True
    worst_k: int = 8
    #: Start the agent's first ``concurrency`` queries spread out (see the module docstring); False: at once.
    ramp: bool = False

    def __post_init__(self) -> None:
        if self.concurrency < 1 or (self.limit is not None and self.limit < 0) or not 0 <= self.worst_k <= 8:
            raise UsageError("concurrency must be >= 1, limit >= 0, worst_k in 0..8")


def run_config(task: Task, sam3_model: str, llm: LLMConfig | None, llm_model: str, settings: PlannerSettings,
               runtime: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``run.json`` content: what must match to resume (task, planner, models, settings) and runtime details.

    ``llm`` is None for the direct planner (recorded as ``"llm": null``).
    """
    if isinstance(settings, DirectSettings):
        settings, llm = settings.for_task(task.ranked_detections), None
    return {
        "format": FORMAT_VERSION,
        "task": task.spec.to_dict(),
        "planner": planner_name(settings),
        "sam3_model": sam3_model,
        "llm": None if llm is None else {
            "model": llm_model, "tool_protocol": llm.tool_protocol, "temperature": llm.temperature,
            "max_tokens": llm.max_tokens, "image_max_pixels": llm.image_max_pixels,
            "image_format": llm.image_format, "extra_body": dict(llm.extra_body),
        },
        "settings": dataclasses.asdict(settings),
        "runtime": {**({"llm_base_url": llm.base_url} if llm is not None else {}), **(runtime or {})},
    }


class Progress:
    """A tqdm bar on stderr (rate, ETA, running metric) when available and stderr is a terminal."""

    #: Seconds between two plain progress lines when stderr is not a terminal (logs, CI).
    LINE_EVERY_S = 30.0

    def __init__(self, total: int, done: int, enabled: bool, metric: str | None) -> None:
        self.metric = metric
        self._bar = None
        # Not a terminal: a bar's carriage returns would garble the log, so plain lines instead.
        self._plain = [done, total, time.monotonic()] if enabled and not sys.stderr.isatty() else None
        if enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:  # tqdm comes with transformers, but is not required
                logger.info("tqdm is not installed: no progress bar")
            else:
                self._bar = tqdm(total=total, initial=done, file=sys.stderr, unit="query", dynamic_ncols=True,
                                 smoothing=0.1)

    @property
    def active(self) -> bool:
        """True when a bar is shown (the running metric is only worth computing then)."""
        return self._bar is not None

    def update(self, value: float | None) -> None:
        """One more sample done; ``value`` is the running metric (None: not shown)."""
        if self._plain is not None:
            self._plain[0] += 1
            if time.monotonic() - self._plain[2] >= self.LINE_EVERY_S or self._plain[0] == self._plain[1]:
                self._plain[2] = time.monotonic()
                logging.getLogger("sam3_agent.eval").info("eval: %d/%d queries done", *self._plain[:2])
        if self._bar is None:
            return
        if self.metric and value is not None:
            self._bar.set_postfix({self.metric: f"{value:.4f}"}, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _record(item: EvalItem, answer: AgentAnswer | None, failure: BaseException | None, usage: Usage,
            seconds: float) -> dict[str, Any]:
    """The stored record of one sample (without its score fields)."""
    if answer is not None:
        status, ok, error = answer.status, answer.ok, answer.error
        cause = "" if answer.ok else answer.status
    else:
        status, ok, error = "error", False, f"{type(failure).__name__}: {failure}"
        cause = failure.cause if isinstance(failure, RunFailed) else type(failure).__name__
    return {
        "id": item.id, "query": item.query, "groups": list(item.groups), "status": status, "ok": ok,
        "cause": cause, "error": error,
        "mask_ids": list(answer.mask_ids) if answer else [],
        "scores": [float(s) for s in answer.scores] if answer else [],
        "phrases": list(answer.phrases) if answer else [],
        "masks": masks_to_rle(answer.masks) if answer else [],
        "steps": answer.steps if answer else 0, "verify_calls": answer.verify_calls if answer else 0,
        "llm_calls": usage.calls, "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens, "total_tokens": usage.total_tokens,
        "seconds": round(seconds, 4),
        # where the time went (the concurrency benchmark's limit): waiting for the LLM, for SAM 3
        "model_s": round(float(answer.timings.get("model_s", 0.0)), 4) if answer else 0.0,
        "sam_s": round(float(answer.timings.get("sam_s", 0.0)), 4) if answer else 0.0,
        **(getattr(answer, "extra_fields", None) or {}),  # e.g. a video answer's masklets
    }


@dataclass
class _Run:
    """Everything the samples of one run share."""

    task: Task
    engine: Sam3Engine
    client: LLMClient | None
    settings: PlannerSettings
    log: PredictionLog
    progress: Progress
    scored: list[dict[str, Any]]
    saver: InMemorySaver = dataclasses.field(default_factory=InMemorySaver)
    #: one record written at a time (the log's append is not made for concurrent threads)
    log_lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    graph: CompiledStateGraph | None = None

    def __post_init__(self) -> None:
        if self.graph is None and not isinstance(self.settings, DirectSettings):
            self.graph = build_graph(self.saver)  # compiled once, shared by every query of the run


async def _answer(run: _Run, item: EvalItem) -> AgentAnswer:
    """The planner's answer to one query."""
    if isinstance(run.settings, DirectSettings):
        return await run.task.direct(run.engine, item, run.settings)
    if run.client is None:
        raise UsageError("the agent planner needs an LLM client")
    thread_id = f"eval-{uuid.uuid4().hex}"
    # Encode the image while the model reads the query: the first SAM 3 call then finds the features cached,
    # and the encodings of queries that start together share encoder passes. Load errors are the agent's to
    # report, so the prefetch's own outcome is only collected.
    prefetch = asyncio.ensure_future(run.engine.aencode(item.image_path))
    try:
        return await run_agent(run.engine, run.client, item.image_path, item.query, settings=run.settings,
                               thread_id=thread_id, graph=run.graph)
    finally:
        await asyncio.gather(prefetch, return_exceptions=True)
        await run.saver.adelete_thread(thread_id)  # the answer holds all that is kept


async def _run_sample(run: _Run, item: EvalItem) -> dict[str, Any]:
    """Answer one query (never raises for agent or LLM failures) and score the answer."""
    return await _score(run, item, *await _answer_sample(run, item))


async def _answer_sample(run: _Run, item: EvalItem) -> tuple[dict[str, Any], np.ndarray]:
    """One query's record (never raises for agent or LLM failures) and its answer's masks, not yet scored."""
    started = time.perf_counter()
    answer: AgentAnswer | None = None
    failure: Exception | None = None
    try:
        answer = await _answer(run, item)
    except Sam3AgentError as exc:
        failure = exc
        logger.warning("sample %s failed (%s): %s", item.id, getattr(exc, "cause", type(exc).__name__), exc)
    except Exception as exc:  # any other crash of one query must not stop the benchmark
        failure = exc
        logger.exception("sample %s crashed", item.id)
    # run_agent counts each query's own calls even on a shared client; a failed run carries its answer.
    counted = answer if answer is not None else getattr(failure, "answer", None)
    usage = counted.usage if counted is not None else Usage()
    record = _record(item, answer, failure, usage, time.perf_counter() - started)
    return record, answer.masks if answer is not None else NO_MASKS


async def _score(run: _Run, item: EvalItem, record: dict[str, Any], masks: np.ndarray) -> dict[str, Any]:
    """``record`` with the task's scores of ``masks`` (off the event loop)."""
    fields = await asyncio.to_thread(run.task.score_record, item, record, masks)
    return {**record, **fields}


async def _worker(run: _Run, item: EvalItem, slots: asyncio.Semaphore, delay_s: float = 0.0) -> None:
    async with slots:
        await asyncio.sleep(delay_s)  # in its slot already, so that no later query starts before it
        answered = await _answer_sample(run, item)
    # scored after the slot is given back: the next query need not wait for the scoring of this one
    record = await _score(run, item, *answered)
    async with run.log_lock:  # off the event loop: the append waits for fsync, which can take milliseconds
        await asyncio.to_thread(run.log.append, record)
    run.scored.append(record)
    run.progress.update(run.task.progress_value(run.scored) if run.progress.active else None)


#: Longest time over which the first queries start (a slow engine, or one whose statistics come from
#: unbatched requests, must not hold back the run's start: the ramp only has to break the lock-step).
MAX_RAMP_S = 1.0


async def ramp_spacing(engine: Sam3Engine, first_image: Any, concurrency: int) -> float:
    """Seconds between the starts of the agent's first ``concurrency`` queries: the SAM 3 worker's mean busy
    seconds per request so far (about the time one query's image encoding or segmentation adds), so that
    the work of the queries started meets the worker about as fast as it can serve it; at most
    :data:`MAX_RAMP_S` for all of them. An engine that has served nothing yet encodes ``first_image`` (the
    first query's, which is cached for it) to find out."""
    stats = engine.batch_stats()
    if stats.requests == 0:
        await asyncio.gather(engine.aencode(first_image), return_exceptions=True)
        stats = engine.batch_stats()
    if not stats.requests or concurrency < 2:
        return 0.0
    return min(MAX_RAMP_S / (concurrency - 1), stats.busy_s / stats.requests)


async def _gather_all(coroutines: list[Any]) -> None:
    """Run the coroutines together; if one raises, cancel the rest and re-raise."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


@contextlib.asynccontextmanager
async def _shared_client(llm: LLMConfig | LLMClient | None) -> AsyncIterator[LLMClient | None]:
    if llm is None or isinstance(llm, LLMClient):
        yield llm
        return
    async with LLMClient(llm) as client:
        yield client


def checked_planner(task: Task, settings: PlannerSettings, llm: Any) -> tuple[PlannerSettings, Any]:
    """``(settings, llm)`` ready to run ``task``: direct settings fitted to the task (and no LLM), or agent
    settings with their LLM. Raises :class:`UsageError` for the agent planner without an LLM, or a planner
    the task does not offer."""
    if isinstance(settings, DirectSettings):
        settings, llm = settings.for_task(task.ranked_detections), None
    elif llm is None:
        raise UsageError("the agent planner needs an LLM (an LLMConfig or LLMClient); or use DirectSettings")
    if planner_name(settings) not in task.planners:
        raise UsageError(f"{task.spec.dataset} is answered by the {' or '.join(task.planners)} planner only")
    return settings, llm


@locked_run_dir  # one run per folder at a time (eval.run_lock)
async def run_eval(task: Task, run_dir: str | Path, engine: Sam3Engine, llm: LLMConfig | LLMClient | None, *,
                   sam3_model: str, settings: PlannerSettings | None = None,
                   options: RunOptions | None = None) -> dict[str, Any]:
    """Run (or resume) ``task`` into ``run_dir`` and write the report; returns the report dict.

    ``settings`` picks the planner: :class:`AgentSettings` (the default) runs the agent with ``llm``;
    :class:`DirectSettings` runs SAM 3 alone and never uses ``llm`` (pass None).

    Raises:
        ConfigMismatch: ``run_dir`` holds a run with another configuration.
        RunDirLocked: another run is using ``run_dir`` now (the error names its pid).
        RunFailed: the LLM endpoint cannot tell its model name (nothing was run).
        InputError: the dataset cannot be read.
        UsageError: the agent planner without an ``llm``.
    """
    options = options or RunOptions()
    settings, llm = checked_planner(task, settings or AgentSettings(), llm)
    items = task.items()
    items = items[: options.limit] if options.limit is not None else items
    async with _shared_client(llm) as client:
        model = await client.model_name() if client is not None else ""
        runtime = {"concurrency": options.concurrency, "limit": options.limit}
        config = run_config(task, sam3_model, client.config if client is not None else None, model, settings, runtime)
        prepare_run_dir(run_dir, config)
        with PredictionLog.open(run_dir) as log:
            wanted = {item.id for item in items}
            scored = [r for r in log.records if r["id"] in wanted]
            todo = [item for item in items if item.id not in log]
            logger.info("%s %s: %d queries, %d already done, %d to run with concurrency %d",
                        task.spec.dataset, task.spec.split, len(items), len(scored), len(todo), options.concurrency)
            progress = Progress(len(items), len(scored), options.progress, task.progress_name)
            run = _Run(task, engine, client, settings, log, progress, scored)
            slots = asyncio.Semaphore(options.concurrency)
            spread = options.ramp and not isinstance(settings, DirectSettings) and len(todo) > 1
            spacing = await ramp_spacing(engine, todo[0].image_path, options.concurrency) if spread else 0.0
            # the first `concurrency` queries start `spacing` apart; the rest wait for free slots
            delays = [i * spacing if i < options.concurrency else 0.0 for i in range(len(todo))]
            try:
                await _gather_all([_worker(run, item, slots, delay) for item, delay in zip(todo, delays)])
            finally:
                progress.close()
    return await asyncio.to_thread(score_run, run_dir, task, options.worst_k)
