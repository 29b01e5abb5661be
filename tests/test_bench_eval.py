"""The evaluation throughput benchmark runs end to end in process (tiny model, scripted LLM, small settings).

The scripted LLM server stays a child process, as in a real benchmark run."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import load_bench


def test_eval_benchmark_runs(tmp_path, tiny_checkpoint, caplog):
    out = tmp_path / "eval.json"
    args = ["--samples", "6", "--latency-ms", "20", "--concurrency", "4", "--repeats", "1",
            "--checkpoint", tiny_checkpoint, "--out", str(out), "--compare-ramp"]
    with caplog.at_level(logging.INFO, logger="bench.eval"):
        load_bench("eval").main(args)
    assert "agent (median of 1): " in caplog.text and "queries/s at concurrency 4" in caplog.text
    assert "bar >= 8x" in caplog.text and "limit at concurrency 4" in caplog.text
    assert "of it (goal >= 90%" in caplog.text
    report = json.loads(out.read_text())
    summary = report["summary"]
    assert report["sam_threads"] == 1
    assert summary["samples"] == 6 and summary["latency_ms"] == 20 and summary["concurrency"] == 4
    assert summary["repeats"] == 1
    for key in ("agent_qps_c1", "agent_qps_c4", "direct_qps_c1", "direct_qps_c4", "agent_speedup"):
        assert summary[key] > 0
    assert summary["agent_speedup"] == summary["agent_qps_c4"] / summary["agent_qps_c1"]
    runs = {(r["planner"], r["concurrency"]): r for r in report["runs"]}
    assert set(runs) == {("agent", 1), ("agent", 4), ("direct", 1), ("direct", 4), ("agent-other-ramp", 4)}
    assert all(r["queries"] == 6 and r["wall_s"] > 0 for r in runs.values())
    assert runs["agent", 1]["max_llm_requests_in_flight"] == 1 and runs["agent", 4]["max_llm_requests_in_flight"] >= 2
    assert runs["agent", 1]["llm_requests"] == 12 and runs["agent", 1]["mean_llm_calls"] == 2.0
    assert runs["direct", 4]["llm_requests"] == 0 and runs["direct", 4]["mean_llm_calls"] == 0.0
    # 6 queries of two calls, each call 20 ms: one at a time it cannot be faster than 240 ms
    assert runs["agent", 1]["wall_s"] >= 6 * 2 * 0.02
    # the limit: two LLM calls per query as the agent saw them, and the direct planner's batched SAM 3 time
    assert summary["limit_llm_calls_per_query"] == 2.0 and summary["limit_llm_s_per_call"] >= 0.02
    assert summary["limit_sam_s_per_query"] == 1 / summary["direct_qps_c4"]
    bench = load_bench("eval")
    assert summary["limit_qps"] == bench.concurrency_limit(4, 2.0, summary["limit_llm_s_per_call"],
                                                           summary["limit_sam_s_per_query"])
    assert summary["fraction_of_limit"] == summary["agent_qps_c4"] / summary["limit_qps"]
    assert summary["limit_speedup"] == summary["limit_qps"] / summary["agent_qps_c1"]
    assert summary["limit_at_configured_latency_qps"] >= summary["limit_qps"]  # the agent never sees less latency
    assert all(r["llm_s_per_call"] >= 0.02 for r in report["runs"] if r["planner"] == "agent")
    assert summary["finite_run_limit_qps"] <= summary["limit_qps"]
    assert summary["limit_with_agent_cpu_qps"] <= summary["limit_qps"]
    for run in report["runs"]:  # the time split adds up; the worker served every run in batches
        assert run["query_s"] == pytest.approx(run["llm_s_per_query"] + run["sam_s_per_query"]
                                               + run["other_s_per_query"])
        assert run["batches"] >= 1 and run["mean_batch_size"] >= 1 and run["cpu_s_per_query"] > 0
    assert "load average at the start" in caplog.text and "counting the agent's own CPU" in caplog.text
    assert "start ramp" in caplog.text
    assert summary["ramp_gain"] == summary["agent_qps_ramp"] / summary["agent_qps_at_once"]
    assert summary["agent_qps_at_once"] == summary["agent_qps_c4"]  # the default runner starts them at once


def test_concurrency_limit_is_the_smaller_of_the_two_bounds():
    limit = load_bench("eval").concurrency_limit
    # LLM-bound: 16 queries in flight, each 2 x 300 ms of LLM and 26 ms of SAM 3
    assert limit(16, 2, 0.3, 0.026) == pytest.approx(16 / 0.626)
    # SAM-bound: the single worker serves at most 1 / D queries per second, however many are in flight
    assert limit(64, 2, 0.3, 0.026) == pytest.approx(1 / 0.026)
    assert limit(1, 2, 0.3, 0.0) == pytest.approx(1 / 0.6)


def test_finite_run_and_agent_cpu_limits():
    bench = load_bench("eval")
    # 32 queries, SAM-bound: 32 x 43 ms of SAM 3, then the last answer's 300 ms LLM call
    assert bench.finite_run_limit(32, 16, 2, 0.3, 0.043) == pytest.approx(32 / (32 * 0.043 + 0.3))
    # LLM-bound: two rounds of 16 queries, each 2 x 300 ms + 10 ms
    assert bench.finite_run_limit(32, 16, 2, 0.3, 0.010) == pytest.approx(32 / (2 * 0.61))
    # a long run approaches the asymptotic limit from below
    assert bench.finite_run_limit(10_000, 16, 2, 0.3, 0.043) < bench.concurrency_limit(16, 2, 0.3, 0.043)
    # the agent's own 20 ms per query lengthen each query's path; all CPU shares the cores
    assert bench.agent_cpu_limit(16, 2, 0.3, 0.010, 0.020, 0.05, 2) == pytest.approx(16 / 0.63)
    assert bench.agent_cpu_limit(16, 2, 0.3, 0.010, 0.020, 0.5, 2) == pytest.approx(2 / 0.5)
    assert bench.agent_cpu_limit(16, 2, 0.3, 0.05, 0.0, 0.05, 2) == pytest.approx(1 / 0.05)
