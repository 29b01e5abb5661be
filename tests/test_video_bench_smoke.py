"""The video benchmark runs end to end on the tiny model and writes its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_video_benchmark_runs(tmp_path):
    out = tmp_path / "video.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "video.py"), "--objects", "1", "2", "--frames", "2",
                           "--repeats", "1", "--size", "48", "64", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [(r["mode"], r["objects"]) for r in report["rows"]] == [
        ("track", 1), ("track", 2), ("detect+track", 1), ("detect+track", 2)]
    assert all(r["fps"] > 0 and r["slowdown_vs_first"] > 0 for r in report["rows"])
