"""With ``RunOptions(ramp=True)`` the runner starts the agent's first queries spread out, one SAM 3 request's
busy time apart."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

import eval.runner as runner
from agent.llm import LLMConfig
from agent.settings import AgentSettings
from agent.testing import ScriptedLLM
from eval.planners import DirectSettings
from eval.runner import MAX_RAMP_S, RunOptions, ramp_spacing, run_eval
from eval.tasks import TaskSpec, load_task
from eval.testing import AgentScript, write_reasonseg
from sam3_core.batching import BatchStats


class StatsOnly:
    """An engine stand-in with given batch statistics (and an encoder that adds one request)."""

    def __init__(self, stats: BatchStats) -> None:
        self.stats, self.encoded = stats, []

    def batch_stats(self) -> BatchStats:
        return self.stats

    async def aencode(self, image: object) -> None:
        self.encoded.append(image)
        self.stats = BatchStats(batches=1, requests=1, largest_batch=1, busy_s=0.03)


def test_spacing_is_the_mean_busy_time_per_request():
    warm = StatsOnly(BatchStats(batches=5, requests=20, largest_batch=8, busy_s=0.8))
    assert asyncio.run(ramp_spacing(warm, "a.jpg", 16)) == pytest.approx(0.04) and warm.encoded == []
    fresh = StatsOnly(BatchStats())  # has served nothing: encodes the first image to find out
    assert asyncio.run(ramp_spacing(fresh, "a.jpg", 16)) == pytest.approx(0.03) and fresh.encoded == ["a.jpg"]
    slow = StatsOnly(BatchStats(batches=1, requests=1, largest_batch=1, busy_s=30.0))
    assert asyncio.run(ramp_spacing(slow, "a.jpg", 11)) == pytest.approx(MAX_RAMP_S / 10)  # all start within it
    assert asyncio.run(ramp_spacing(warm, "a.jpg", 1)) == 0.0


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return load_task(TaskSpec("reasonseg", str(write_reasonseg(tmp_path_factory.mktemp("ramp"), copies=2)), "val"))


def started_delays(monkeypatch, engine, task, out: Path, settings, **options) -> tuple[list[float], dict]:
    """The delay each query waits in its slot before starting (in the order the runner made them), and the
    run's report."""
    delays: list[float] = []
    worker = runner._worker

    def recorded(run, item, slots, delay_s=0.0):
        delays.append(delay_s)
        return worker(run, item, slots, delay_s)

    monkeypatch.setattr(runner, "_worker", recorded)
    with ScriptedLLM(responder=AgentScript(delay_s=0.0)) as server:
        llm = None if isinstance(settings, DirectSettings) else LLMConfig(
            base_url=server.base_url, model=server.model, api_key="test", timeout_s=20.0, max_retries=0)
        report = asyncio.run(run_eval(task, out, engine, llm, sam3_model="tiny", settings=settings,
                                      options=RunOptions(progress=False, worst_k=0, **options)))
    return delays, report


def test_first_queries_start_spaced_the_rest_in_free_slots(monkeypatch, engine, task, tmp_path):
    spacing = asyncio.run(ramp_spacing(engine, task.items()[0].image_path, 3))
    assert 0 < spacing <= MAX_RAMP_S / 2
    delays, report = started_delays(monkeypatch, engine, task, tmp_path / "ramp", AgentSettings(score_threshold=0.2),
                                    concurrency=3, ramp=True)
    assert report["samples"]["scored"] == 8 and report["failures"]["count"] == 0
    assert len(delays) == 8 and delays[0] == 0 and delays[3:] == [0.0] * 5  # the first 3 (the concurrency) spaced
    assert delays[1] > 0 and math.isclose(delays[2], 2 * delays[1])


@pytest.mark.parametrize("case", ["default", "direct"])
def test_all_at_once_by_default_and_for_the_direct_planner(monkeypatch, engine, task, tmp_path, case):
    settings = DirectSettings(score_threshold=0.2) if case == "direct" else AgentSettings(score_threshold=0.2)
    options = {"ramp": True} if case == "direct" else {}
    delays, report = started_delays(monkeypatch, engine, task, tmp_path / case, settings, concurrency=3, **options)
    assert report["samples"]["scored"] == 8 and delays == [0.0] * 8
