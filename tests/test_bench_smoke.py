"""The engine benchmark runs end to end in process (tiny model, one repeat) and writes its report."""

from __future__ import annotations

import json

import torch
from conftest import load_bench


def test_engine_benchmark_runs(tmp_path):
    out = tmp_path / "engine.json"
    grad_before = torch.is_grad_enabled()
    returned = load_bench("engine").main(["--tiny", "--repeats", "1", "--callers", "3", "--out", str(out)])
    report = json.loads(out.read_text())
    assert returned == report
    assert [row["phrases"] for row in report["phrases"]] == [1, 4, 16]
    assert all(row["engine_ms"] > 0 and row["speedup"] > 0 for row in report["phrases"])
    assert report["concurrency"]["callers"] == 3
    assert report["cached"]["encode_ms"] > 0
    assert report["flops"]["encode_per_phrase"] > 0
    assert torch.is_grad_enabled() == grad_before  # the script leaves the process as it found it
