"""The agent benchmark runs end to end (tiny model, scripted LLM, small settings) and writes its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_agent_benchmark_runs(tmp_path, tiny_checkpoint):
    out = tmp_path / "agent.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    args = ["--latency-ms", "20", "--repeats", "1", "--image-size", "90x120", "--checkpoint", tiny_checkpoint,
            "--out", str(out)]
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "agent.py"), *args], capture_output=True, text=True,
                          env=env, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "examine_each_mask over 8 masks" in done.stdout and "agent overhead" in done.stdout
    report = json.loads(out.read_text())
    summary = report["summary"]
    assert summary["masks_examined"] >= 8 and summary["latency_s"] == 0.02
    assert summary["examine_s"] >= 0.02 and summary["one_call_s"] >= 0.02 and summary["sequential_s"] >= 8 * 0.02
    assert summary["examine_vs_one_call"] > 0 and summary["sequential_vs_examine"] > 0
    assert summary["overhead_per_step_s"] >= 0 and summary["examine_cold_s"] > 0
    (run,) = report["runs"]
    assert [r["node"] for r in run["trace"]][-2:] == ["call_model", "run_tool"]
    assert run["overhead"]["timings"]["model_calls"] >= 8 + 3
