"""The micro-batcher serves requests someone is blocked on before deferrable warm-ups."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from sam3_core.batching import MicroBatcher, Request
from sam3_core.engine import EngineOptions
from sam3_core.errors import UsageError


@dataclass
class Work(Request):
    name: str
    key: str = ""

    def affinity(self):
        return self.key or None


@dataclass
class WarmUp(Work):
    deferrable: ClassVar[bool] = True


def run_while_blocked(requests: list[Request], **options) -> list[list[str]]:
    """Queue ``requests`` while a first batch holds the worker, then release it; the batches that followed."""
    started, release, batches = threading.Event(), threading.Event(), []

    def handler(batch):
        if batch[0].name == "gate":
            started.set()
            release.wait(5)
        else:
            batches.append([r.name for r in batch])
        for r in batch:
            r.future.set_result(r.name)

    worker = MicroBatcher(handler, max_wait_s=0, **options)
    gate = worker.submit(Work("gate"))
    assert started.wait(5)
    futures = [worker.submit(r) for r in requests]
    assert worker.queue_depth() == len(requests)
    release.set()
    assert [f.result(5) for f in [gate, *futures]] == ["gate", *(r.name for r in requests)]
    worker.close()
    return batches


def test_blocked_requests_go_before_queued_warm_ups_which_share_their_image():
    queued = [WarmUp(f"w{i}", key=f"img{i}") for i in range(5)] + [Work("s3", key="img3"), Work("s9", key="img9")]
    batches = run_while_blocked(queued, max_batch=32, max_deferred=2)
    # the segment requests first, with the warm-up of the same image riding along; then the other
    # warm-ups in batches of at most max_deferred (one encoder pass each)
    assert batches == [["s3", "s9", "w3"], ["w0", "w1"], ["w2", "w4"]]


def test_a_warm_up_waiting_past_max_defer_s_is_served_like_any_request():
    batches = run_while_blocked([WarmUp("w0"), WarmUp("w1"), Work("s")], max_batch=32, max_deferred=1,
                                max_defer_s=0)
    assert batches == [["w0", "w1", "s"]]


def test_max_batch_still_bounds_a_batch_of_blocked_requests():
    batches = run_while_blocked([Work(f"s{i}") for i in range(5)] + [WarmUp("w")], max_batch=2, max_deferred=4)
    assert batches == [["s0", "s1"], ["s2", "s3"], ["s4"], ["w"]]


def test_close_serves_what_is_queued():
    seen = []
    worker = MicroBatcher(lambda b: [seen.append(r.name) or r.future.set_result(None) for r in b], max_wait_s=0)
    futures = [worker.submit(WarmUp(f"w{i}")) for i in range(3)]
    worker.close()
    assert all(f.done() for f in futures) and sorted(seen) == ["w0", "w1", "w2"]


def test_on_start_runs_on_the_worker_thread_before_any_batch():
    seen = []

    def handler(batch):
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        for r in batch:
            r.future.set_result(r.name)

    worker = MicroBatcher(handler, name="t-worker", on_start=lambda: torch.set_num_threads(1))
    assert worker.submit(Work("a")).result(5) == "a"
    worker.close()
    assert seen == [("t-worker", 1)]


def test_engine_threads_must_be_positive():
    with pytest.raises(UsageError, match="threads"):
        EngineOptions(threads=0)
