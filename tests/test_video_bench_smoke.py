"""The video benchmark runs end to end in process on the tiny model and writes its report."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import load_bench


def test_video_benchmark_runs(tmp_path):
    out = tmp_path / "video.json"
    rng_before = torch.random.get_rng_state()
    load_bench("video").main(["--objects", "1", "2", "--frames", "2", "--repeats", "1", "--size", "48", "64",
                              "--device", "cpu", "--out", str(out)])
    report = json.loads(out.read_text())
    assert [(r["mode"], r["path"], r["objects"]) for r in report["rows"]] == [
        (mode, path, n) for mode in ("track", "detect+track") for path in ("batched", "per-object") for n in (1, 2)]
    assert all(r["fps"] > 0 and r["slowdown_vs_first"] > 0 and r["cpu_ms_per_frame"] > 0 for r in report["rows"])
    assert all(r["gflop_per_frame"] > 0 for r in report["rows"])
    flops = {(r["mode"], r["path"], r["objects"]): r["gflop_per_frame"] for r in report["rows"]}
    assert flops[("track", "batched", 2)] > flops[("track", "batched", 1)]  # a second object adds arithmetic
    assert all(r["speedup_vs_per_object"] > 0 for r in report["rows"] if r["path"] == "batched")
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # seeded in a forked RNG


def test_full_size_flop_count_runs_on_meta_tensors():
    """The released architecture's FLOPs by object count, counted without weights or compute."""
    report = load_bench("video").main(["--full-size-flops", "--objects", "1", "16"])
    assert report["image_gflop"] > 1000 and report["per_object_gflop"] > 100  # TFLOP-scale backbone, heavy tracker
    one, sixteen = report["rows"]
    expected = report["image_gflop"] + 16 * report["per_object_gflop"]
    assert sixteen["gflop_per_frame"] == pytest.approx(expected, rel=1e-3)
    assert sixteen["flop_ratio_vs_first"] == pytest.approx(expected / one["gflop_per_frame"], rel=1e-3)
