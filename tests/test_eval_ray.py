"""Evaluation on a local 2-CPU Ray cluster: same metrics as one process, and a killed worker loses no sample.

The cluster tests are skipped only when Ray is not installed (``pip install 'sam3-agent[ray]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from cli.eval_ray import add_ray_arguments, ray_options
from cli.main import main
from eval.distributed import EngineSpec, RayOptions, RayPool, run_eval_ray
from eval.planners import DirectSettings
from eval.records import PREDICTIONS_FILE
from eval.runner import RunOptions, run_eval
from eval.saco.testing import write_saco_images
from eval.tasks import TaskSpec, load_task
from sam3_core.postprocess import rle_to_mask

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")

SETTINGS = DirectSettings(score_threshold=0.05)
OPTIONS = RunOptions(concurrency=1, progress=False, worst_k=0)
METRICS = ("cgF1", "IL_MCC", "positive_micro_F1", "AP", "IL_TP", "IL_FP")


@pytest.fixture(scope="module")
def cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_saco_images(tmp_path_factory.mktemp("saco_ray"))


@pytest.fixture(scope="module")
def task(data):
    media = {"": str(data / "images"), "bdd": str(data / "bdd_images")}
    return load_task(TaskSpec("saco", str(data), "test", {"media_dirs": media, "subsets": None,
                                                          "score_threshold": 0.2}))


@pytest.fixture(scope="module")
def single(task, engine, tiny_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single")
    asyncio.run(run_eval(task, out, engine, None, sam3_model=tiny_checkpoint, settings=SETTINGS, options=OPTIONS))
    return out


def records(run_dir: Path) -> dict[str, dict]:
    lines = [json.loads(line) for line in (run_dir / PREDICTIONS_FILE).read_text().splitlines()]
    by_id = {r["id"]: r for r in lines}
    assert len(by_id) == len(lines), "a sample was written twice"
    return by_id


def union(record: dict) -> np.ndarray:
    masks = [rle_to_mask(r) for r in record["masks"]]
    return np.any(masks, axis=0) if masks else np.zeros((48, 64), dtype=bool)


def assert_same_run(run_dir: Path, reference: Path, task) -> None:
    """Every sample once; masks alike (IoU >= 0.98 per sample); the metrics within a small tolerance."""
    ours, theirs = records(run_dir), records(reference)
    assert sorted(ours) == sorted(theirs) == sorted(item.id for item in task.items())
    for key, record in ours.items():
        a, b = union(record), union(theirs[key])
        assert (a & b).sum() >= 0.98 * (a | b).sum(), f"sample {key}: masks differ between the runs"
    got = json.loads((run_dir / "report.json").read_text())["metrics"]["all"]
    want = json.loads((reference / "report.json").read_text())["metrics"]["all"]
    for name in METRICS:
        assert got[name] == pytest.approx(want[name], abs=0.02), name


def test_ray_options_from_the_command_line() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device")
    add_ray_arguments(parser)
    local = ray_options(parser.parse_args(["--ray"]))
    assert local == RayOptions(address=None, workers=2, gpus_per_worker=0.0)
    cluster = ray_options(parser.parse_args(["--ray", "auto", "--device", "cuda", "--ray-workers", "8",
                                             "--ray-llm-urls", "http://a/v1, http://b/v1"]))
    assert (cluster.address, cluster.workers, cluster.gpus_per_worker) == ("auto", 8, 1.0)
    assert cluster.llm_urls == ("http://a/v1", "http://b/v1")
    assert parser.parse_args([]).ray is None


def cli(data: Path, out: Path, checkpoint: str, *extra: str) -> list[str]:
    return ["eval", "saco", "--data", str(data), "--out", str(out), "--model", checkpoint, "--device", "cpu",
            "--image-dir", str(data / "images"), "--subset-image-dir", f"bdd={data / 'bdd_images'}",
            "--planner", "direct", "--score-threshold", "0.05", "--cgf1-threshold", "0.2", "--concurrency", "1",
            "--no-progress", "--worst", "0", *extra]


@needs_ray
def test_cli_ray_resumes_a_single_process_run_with_the_same_metrics(cluster, data, task, single, tiny_checkpoint,
                                                                    tmp_path) -> None:
    out = tmp_path / "ray"
    assert main(cli(data, out, tiny_checkpoint, "--limit", "2")) == 0  # one process, first two samples
    first = records(out)
    assert main(cli(data, out, tiny_checkpoint, "--ray", "--ray-workers", "2")) == 0  # the rest on Ray
    assert json.loads((out / "run.json").read_text())["runtime"]["ray"]["workers"] == 2
    after = records(out)
    assert len(first) == 2 and all(after[key] == record for key, record in first.items())  # kept, not run again
    assert_same_run(out, single, task)


@needs_ray
def test_killed_worker_loses_no_sample(cluster, task, single, tiny_checkpoint, tmp_path, caplog) -> None:
    import ray

    out = tmp_path / "ray-kill"
    killed: list[int] = []

    def kill_first_worker(record: dict, pool: RayPool) -> None:
        if not killed:  # once, after the first sample: the other samples are still to come
            killed.append(ray.get(pool.actors[0].pid.remote()))
            ray.kill(pool.actors[0], no_restart=True)

    asyncio.run(run_eval_ray(task, out, EngineSpec(tiny_checkpoint, "cpu"), None, sam3_model=tiny_checkpoint,
                             settings=SETTINGS, options=OPTIONS, ray_options=RayOptions(workers=2),
                             on_record=kill_first_worker))
    assert killed
    assert "queued again" in caplog.text and "started a replacement" in caplog.text
    assert_same_run(out, single, task)
