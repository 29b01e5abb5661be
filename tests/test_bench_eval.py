"""The evaluation throughput benchmark runs end to end in process (tiny model, scripted LLM, small settings).

The scripted LLM server stays a child process, as in a real benchmark run."""

from __future__ import annotations

import json
import logging

from conftest import load_bench


def test_eval_benchmark_runs(tmp_path, tiny_checkpoint, caplog):
    out = tmp_path / "eval.json"
    args = ["--samples", "6", "--latency-ms", "20", "--concurrency", "4", "--repeats", "1",
            "--checkpoint", tiny_checkpoint, "--out", str(out)]
    with caplog.at_level(logging.INFO, logger="bench.eval"):
        load_bench("eval").main(args)
    assert "agent (median of 1): " in caplog.text and "queries/s at concurrency 4" in caplog.text
    assert "bar >= 8x" in caplog.text
    report = json.loads(out.read_text())
    summary = report["summary"]
    assert summary["samples"] == 6 and summary["latency_ms"] == 20 and summary["concurrency"] == 4
    assert summary["repeats"] == 1
    for key in ("agent_qps_c1", "agent_qps_c4", "direct_qps_c1", "direct_qps_c4", "agent_speedup"):
        assert summary[key] > 0
    assert summary["agent_speedup"] == summary["agent_qps_c4"] / summary["agent_qps_c1"]
    runs = {(r["planner"], r["concurrency"]): r for r in report["runs"]}
    assert set(runs) == {("agent", 1), ("agent", 4), ("direct", 1), ("direct", 4)}
    assert all(r["queries"] == 6 and r["wall_s"] > 0 for r in runs.values())
    assert runs["agent", 1]["max_llm_requests_in_flight"] == 1 and runs["agent", 4]["max_llm_requests_in_flight"] >= 2
    assert runs["agent", 1]["llm_requests"] == 12 and runs["agent", 1]["mean_llm_calls"] == 2.0
    assert runs["direct", 4]["llm_requests"] == 0 and runs["direct", 4]["mean_llm_calls"] == 0.0
    # 6 queries of two calls, each call 20 ms: one at a time it cannot be faster than 240 ms
    assert runs["agent", 1]["wall_s"] >= 6 * 2 * 0.02
