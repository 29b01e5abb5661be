"""Evaluation throughput on Ray vs one process: samples per second of the same run, one measurement each.

A synthetic SA-Co image set (``eval/saco/testing.py``, copied ``--copies`` times over fresh images) is
run with the direct planner (SAM 3 alone; ``--planner agent`` adds the scripted LLM server with a
fixed latency per call) on a tiny random SAM 3 on CPU, twice:

* **single**: :func:`eval.runner.run_eval` in this process, one engine, ``--concurrency`` queries at once;
* **ray**: :func:`eval.distributed.run_eval_ray` on a local Ray instance with ``--workers`` actors,
  each with its own engine and ``--cpus-per-worker`` torch threads, ``--concurrency`` queries each.

Reported per run: wall time (Ray: actor start included), samples/s over the wall time, and samples/s
after the first sample (Ray: leaves out the actors' start), and the ratio ray / single of both. On a
machine shared with other work the numbers move; they are one run each, not a median.

    python bench/eval_ray.py                        # 28 samples, 2 workers
    python bench/eval_ray.py --copies 8 --workers 2 --out /tmp/eval_ray.json
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import write_report
from eval.distributed import EngineSpec, RayOptions, run_eval_ray
from eval.planners import DirectSettings
from eval.runner import RunOptions, run_eval
from eval.saco.testing import write_saco_images
from eval.tasks import TaskSpec, load_task
from eval.testing import _image
from sam3_core import Sam3Engine
from sam3_core.tiny import write_tiny_checkpoint

logger = logging.getLogger("bench.eval_ray")


def write_data(root: Path, copies: int) -> TaskSpec:
    """``copies`` copies of the synthetic SA-Co subsets as subsets of one set, each copy with its own images
    (SAM 3's feature cache is keyed by pixels: copies must differ to cost what real images cost)."""
    data = root / "data"
    data.mkdir()
    media: dict[str, str] = {}
    for copy in range(copies):
        base = write_saco_images(root / f"copy{copy}")
        for index, image in enumerate(sorted(base.rglob("*.jpg"))):
            _image(10_000 + 100 * copy + index).save(image, quality=95)
        for path in base.glob("*.json"):
            name = path.name.replace("fg_food", f"fg_food{copy}").replace("_bdd_", f"_bdd{copy}_")
            shutil.copy(path, data / name)
        media |= {f"fg_food{copy}": str(base / "images"), f"bdd{copy}": str(base / "bdd_images")}
    return TaskSpec("saco", str(data), "test", {"media_dirs": media, "score_threshold": 0.2})


class Clock:
    """Time of the first and last record written (the rate after the first sample)."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last = 0.0
        self.count = 0

    def tick(self, *_: Any) -> None:
        now = time.perf_counter()
        self.first = now if self.first is None else self.first
        self.last, self.count = now, self.count + 1

    def steady_rate(self) -> float:
        return (self.count - 1) / (self.last - self.first) if self.first is not None and self.count > 1 else 0.0


async def single_run(task: Any, out: Path, checkpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    import eval.runner as runner

    clock = Clock()
    original = runner.PredictionLog.append

    def append(log: Any, record: Any) -> None:  # time each record as the Ray run's callback does
        original(log, record)
        clock.tick()

    started = time.perf_counter()
    with Sam3Engine.from_pretrained(checkpoint, device="cpu", with_tracker=False) as engine:
        loaded = time.perf_counter()
        runner.PredictionLog.append = append  # type: ignore[method-assign]
        try:
            report = await run_eval(task, out, engine, None, sam3_model="tiny", settings=DirectSettings(0.05),
                                    options=RunOptions(concurrency=args.concurrency, progress=False, worst_k=0))
        finally:
            runner.PredictionLog.append = original  # type: ignore[method-assign]
    wall = time.perf_counter() - loaded
    return {"mode": "single", "samples": report["samples"]["scored"], "wall_s": wall,
            "load_s": loaded - started, "samples_per_s": report["samples"]["scored"] / wall,
            "steady_samples_per_s": clock.steady_rate(), "cgF1": report["metrics"]["all"]["cgF1"]}


async def ray_run(task: Any, out: Path, checkpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    clock = Clock()
    started = time.perf_counter()
    report = await run_eval_ray(task, out, EngineSpec(checkpoint, "cpu"), None, sam3_model="tiny",
                                settings=DirectSettings(0.05),
                                options=RunOptions(concurrency=args.concurrency, progress=False, worst_k=0),
                                ray_options=RayOptions(workers=args.workers, cpus_per_worker=args.cpus_per_worker),
                                on_record=clock.tick)
    wall = time.perf_counter() - started
    return {"mode": "ray", "workers": args.workers, "samples": report["samples"]["scored"], "wall_s": wall,
            "samples_per_s": report["samples"]["scored"] / wall, "steady_samples_per_s": clock.steady_rate(),
            "cgF1": report["metrics"]["all"]["cgF1"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=4, help="copies of the 7 synthetic pairs (default: 4)")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors (default: 2)")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=2, help="queries at once (per actor on Ray)")
    parser.add_argument("--single-threads", type=int, default=0,
                        help="torch threads of the single process (default 0: torch's own choice)")
    parser.add_argument("--out", default="bench/results/eval_ray.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
    logger.setLevel(logging.INFO)
    import ray
    import torch

    if args.single_threads > 0:
        torch.set_num_threads(args.single_threads)

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        task = load_task(write_data(work, args.copies))
        checkpoint = str(write_tiny_checkpoint(work / "tiny", seed=0))
        single = asyncio.run(single_run(task, work / "single", checkpoint, args))
        ray.init(num_cpus=max(2, int(args.workers * args.cpus_per_worker)), include_dashboard=False,
                 logging_level=logging.WARNING)
        try:
            distributed = asyncio.run(ray_run(task, work / "ray", checkpoint, args))
        finally:
            ray.shutdown()
    summary = {"ratio_samples_per_s": distributed["samples_per_s"] / single["samples_per_s"],
               "ratio_steady_samples_per_s": distributed["steady_samples_per_s"] / single["steady_samples_per_s"],
               "same_cgF1": abs(distributed["cgF1"] - single["cgF1"]) < 0.02}
    single["torch_threads"] = torch.get_num_threads()
    report = {"summary": summary, "runs": [single, distributed], "machine": platform.platform(),
              "cpus": os.cpu_count(), "load_average": os.getloadavg()}
    write_report(report, args.out)
    for run in (single, distributed):
        logger.info("%-6s: %d samples in %6.2f s = %5.2f samples/s (after the first: %5.2f/s), cgF1 %.4f",
                    run["mode"], run["samples"], run["wall_s"], run["samples_per_s"], run["steady_samples_per_s"],
                    run["cgF1"])
    logger.info("ray / single: %.2fx samples/s over the wall time, %.2fx after the first sample (%d workers)",
                summary["ratio_samples_per_s"], summary["ratio_steady_samples_per_s"], args.workers)
    logger.info("written %s", args.out)


if __name__ == "__main__":
    main()
