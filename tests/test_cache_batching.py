"""The byte-bounded LRU cache and the micro-batching worker, on their own."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from sam3_core.batching import MicroBatcher, Request
from sam3_core.cache import FeatureCache, tensor_bytes
from sam3_core.errors import UsageError


def test_tensor_bytes_counts_shared_storage_once():
    t = torch.zeros(10, 10)
    assert tensor_bytes(t) == 400
    assert tensor_bytes({"a": t, "b": [t.expand(3, 10, 10)], "c": torch.zeros(5, dtype=torch.int8)}) == 405


def test_lru_order_and_counters():
    cache = FeatureCache[torch.Tensor](max_bytes=1000)
    cache.put("a", torch.zeros(100))  # 400 bytes
    cache.put("b", torch.zeros(100))
    assert cache.get("a") is not None  # a becomes most recent
    cache.put("c", torch.zeros(100))  # evicts b, the least recently used
    assert cache.get("b") is None and cache.peek("a") is not None and cache.peek("c") is not None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.evictions, stats.entries, stats.bytes) == (1, 1, 1, 2, 800)
    cache.put("huge", torch.zeros(1000))  # larger than the whole budget: not stored, nothing evicted
    assert cache.peek("huge") is None and len(cache) == 2
    cache.put("a", torch.zeros(10))  # replacing an entry updates the byte count
    assert cache.stats().bytes == 440


class Echo(Request):
    def __init__(self, value):
        super().__init__()
        self.value = value


def test_requests_arriving_together_share_a_batch():
    seen: list[list[int]] = []
    gate = threading.Event()

    def handler(batch):
        gate.wait(5)
        seen.append([r.value for r in batch])
        for r in batch:
            r.future.set_result(r.value * 2)

    worker = MicroBatcher(handler, max_batch=4, max_wait_s=0.05)
    futures = [worker.submit(Echo(i)) for i in range(6)]
    gate.set()
    assert [f.result(5) for f in futures] == [0, 2, 4, 6, 8, 10]
    assert sorted(v for batch in seen for v in batch) == list(range(6))
    assert max(len(b) for b in seen) <= 4 and len(seen) <= 3
    assert worker.stats().requests == 6
    worker.close()
    with pytest.raises(UsageError):
        worker.submit(Echo(1))


def test_handler_exception_reaches_every_caller_and_worker_survives():
    calls = []

    def handler(batch):
        calls.append(len(batch))
        if any(r.value < 0 for r in batch):
            raise RuntimeError("boom")
        for r in batch:
            r.future.set_result(r.value)

    worker = MicroBatcher(handler, max_batch=1, max_wait_s=0)
    bad = worker.submit(Echo(-1))
    with pytest.raises(RuntimeError, match="boom"):
        bad.result(5)
    assert worker.submit(Echo(3)).result(5) == 3
    worker.close()


def test_lone_request_waits_at_most_max_wait():
    worker = MicroBatcher(lambda b: [r.future.set_result(None) for r in b], max_batch=8, max_wait_s=0.01)
    start = time.monotonic()
    worker.submit(Echo(0)).result(5)
    assert time.monotonic() - start < 2.0
    worker.close()


def test_arrivals_during_a_batch_form_the_next_batch_without_waiting_for_a_full_one():
    # The eval waves: requests arriving while a batch runs must not wait for max_batch company; the
    # worker takes whatever queued as soon as it is free (here 3 requests, far below max_batch=32).
    started, release, sizes = threading.Event(), threading.Event(), []

    def handler(batch):
        sizes.append(len(batch))
        if len(sizes) == 1:
            started.set()
            release.wait(5)
        for r in batch:
            r.future.set_result(r.value)

    worker = MicroBatcher(handler, max_batch=32, max_wait_s=0)
    first = worker.submit(Echo(0))
    assert started.wait(5)
    later = [worker.submit(Echo(i)) for i in range(1, 4)]  # queued while the first batch runs
    release.set()
    assert [f.result(timeout=5) for f in [first, *later]] == [0, 1, 2, 3]
    assert sizes == [1, 3]
    worker.close()


def test_busy_time_covers_the_handler():
    inside: list[float] = []

    def handler(batch):
        start = time.perf_counter()
        for r in batch:
            r.future.set_result(sum(range(10_000)))
        inside.append(time.perf_counter() - start)

    worker = MicroBatcher(handler, max_batch=4, max_wait_s=0)
    for i in range(3):
        worker.submit(Echo(i)).result(5)
    worker.close()
    stats = worker.stats()
    assert stats.batches == len(inside) == 3 and stats.busy_s >= sum(inside) > 0
