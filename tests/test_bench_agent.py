"""The agent benchmark runs end to end in process (tiny model, scripted LLM, small settings)."""

from __future__ import annotations

import json
import logging

from conftest import load_bench


def test_agent_benchmark_runs(tmp_path, tiny_checkpoint, caplog):
    out = tmp_path / "agent.json"
    args = ["--latency-ms", "20", "--repeats", "1", "--image-size", "90x120", "--checkpoint", tiny_checkpoint,
            "--out", str(out)]
    with caplog.at_level(logging.INFO, logger="bench.agent"):
        returned = load_bench("agent").main(args)
    assert "examine_each_mask over 8 masks" in caplog.text and "agent overhead" in caplog.text
    report = json.loads(out.read_text())
    assert returned["summary"] == report["summary"]
    summary = report["summary"]
    assert summary["masks_examined"] >= 8 and summary["latency_s"] == 0.02
    assert summary["examine_s"] >= 0.02 and summary["one_call_s"] >= 0.02 and summary["sequential_s"] >= 8 * 0.02
    assert summary["examine_vs_one_call"] > 0 and summary["sequential_vs_examine"] > 0
    assert summary["overhead_per_step_s"] >= 0 and summary["examine_cold_s"] > 0
    (run,) = report["runs"]
    assert [r["node"] for r in run["trace"]][-2:] == ["call_model", "run_tool"]
    assert run["overhead"]["timings"]["model_calls"] >= 8 + 3
