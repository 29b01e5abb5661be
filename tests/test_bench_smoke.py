"""The benchmark script runs end to end (on the tiny model) and writes its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_engine_benchmark_runs(tmp_path):
    out = tmp_path / "engine.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "engine.py"), "--tiny", "--repeats", "1",
                           "--callers", "3", "--out", str(out)], capture_output=True, text=True, env=env,
                          timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [row["phrases"] for row in report["phrases"]] == [1, 4, 16]
    assert all(row["engine_ms"] > 0 and row["speedup"] > 0 for row in report["phrases"])
    assert report["concurrency"]["callers"] == 3
    assert report["cached"]["encode_ms"] > 0
