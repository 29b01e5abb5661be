"""Frame-result speed: ``build_frame_result`` (low-res logits to full-resolution masks and boxes) per object count.

Each configuration is one frame of ``N`` tracked objects (noisy discs of random size and place on the low-res
grid, all in one group as clicked objects are, so overlaps are resolved among all of them), brought to the
video's size. Reported per object count, best of ``--repeats`` interleaved rounds, in ms:

* ``total``: :func:`sam3_core.video.results.build_frame_result`;
* its parts: ``upsample`` (``F.interpolate``), ``threshold`` (logit > 0), ``resolve`` (:func:`resolve_overlaps`),
  ``boxes`` (:func:`masks_to_boxes`);
* the same bool steps done with torch ops (``torch_threshold``, ``torch_resolve`` = the integer-rank path that
  non-CPU tensors take, ``torch_boxes`` = the two ``any`` reductions), timed in the same rounds so that the
  ratios ``*_speedup`` compare like with like.

    python -m bench.video_results                       # 1, 16, 64 objects, 32x32 -> 240x320, 1 thread
    python -m bench.video_results --low 288 288 --size 1080 1920 --objects 1 16 --repeats 3
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bench.report import write_report
from sam3_core.postprocess import masks_to_boxes
from sam3_core.video.cleanup import resolve_overlaps
from sam3_core.video.results import RawFrame, build_frame_result

logger = logging.getLogger("bench.video_results")


def disc_logits(count: int, low: tuple[int, int], seed: int) -> torch.Tensor:
    """``(count, h, w)`` float32 logits: a noisy disc per object (radius up to a quarter of the grid)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:low[0], 0:low[1]].astype(np.float32)
    out = np.empty((count, *low), np.float32)
    for i in range(count):
        cy, cx = rng.uniform(0, low[0]), rng.uniform(0, low[1])
        radius = rng.uniform(2, max(low) / 4)
        out[i] = radius - np.hypot(yy - cy, xx - cx) + rng.normal(0, 0.3, low)
    return torch.from_numpy(out)


def _mean_ms(function: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return 1000 * (time.perf_counter() - start) / calls


def _steps(raw: RawFrame, size: tuple[int, int]) -> dict[str, Callable[[], object]]:
    """The timed callables of one configuration (inputs prepared once, outside the timing)."""
    scores = torch.tensor([raw.tracker_scores[i] for i in raw.object_ids])
    groups = [-1] * len(raw.object_ids)
    upsampled = F.interpolate(raw.logits.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
    masks = torch.from_numpy(upsampled.numpy() > 0)
    as_bytes = masks.to(torch.uint8)  # not bool: resolve_overlaps takes its integer-rank path
    return {
        "total": lambda: build_frame_result(raw, hidden=set(), groups={}, phrases={}, frame_size=size,
                                            fill_hole_area=0),
        "upsample": lambda: F.interpolate(raw.logits.unsqueeze(1), size=size, mode="bilinear", align_corners=False),
        "threshold": lambda: torch.from_numpy(upsampled.numpy() > 0),
        "torch_threshold": lambda: upsampled > 0,
        "resolve": lambda: resolve_overlaps(masks, scores, groups),
        "torch_resolve": lambda: resolve_overlaps(as_bytes, scores, groups),
        "boxes": lambda: masks_to_boxes(masks),
        "torch_boxes": lambda: (masks.any(dim=2), masks.any(dim=1)),
    }


def bench(object_counts: list[int], low: tuple[int, int], size: tuple[int, int], repeats: int,
          calls: int) -> list[dict]:
    """Best-of-``repeats`` ms of every step at every object count (rounds interleave all of them)."""
    configs = {}
    for count in object_counts:
        ids = list(range(count))
        tracker = np.random.default_rng(count).random(count)
        raw = RawFrame(0, ids, disc_logits(count, low, seed=count), {i: 1.0 for i in ids},
                       {i: float(s) for i, s in zip(ids, tracker)}, cleaned=True)
        configs[count] = _steps(raw, size)
    times: dict[tuple[int, str], list[float]] = {}
    for _ in range(repeats):
        for count, steps in configs.items():
            for name, step in steps.items():
                step()  # warm
                times.setdefault((count, name), []).append(_mean_ms(step, calls))
    rows = []
    for count, steps in configs.items():
        best = {name: min(times[(count, name)]) for name in steps}
        row: dict = {"objects": count, **{f"{name}_ms": round(ms, 4) for name, ms in best.items()}}
        for step in ("threshold", "resolve", "boxes"):
            row[f"{step}_speedup"] = round(best[f"torch_{step}"] / max(best[step], 1e-9), 2)
        rows.append(row)
        logger.info("%3d objects: total %.3f ms  (upsample %.3f, threshold %.3f [torch %.3f], resolve %.3f "
                    "[torch %.3f], boxes %.3f [torch %.3f])", count, row["total_ms"], row["upsample_ms"],
                    row["threshold_ms"], row["torch_threshold_ms"], row["resolve_ms"], row["torch_resolve_ms"],
                    row["boxes_ms"], row["torch_boxes_ms"])
    return rows


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark with command-line ``argv``; writes and returns the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--low", type=int, nargs=2, default=[32, 32], metavar=("h", "w"), help="low-res mask size")
    parser.add_argument("--size", type=int, nargs=2, default=[240, 320], metavar=("H", "W"), help="video frame size")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds; the best is reported")
    parser.add_argument("--calls", type=int, default=20, help="calls per timed step in a round")
    parser.add_argument("--out", default="bench/results/video_results.json")
    args = parser.parse_args(argv)
    if min(args.objects) < 1 or args.repeats < 1 or args.calls < 1:
        parser.error("--objects, --repeats and --calls must be positive")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    load_before = list(os.getloadavg())
    try:
        rows = bench(args.objects, tuple(args.low), tuple(args.size), args.repeats, args.calls)
    finally:
        torch.set_num_threads(previous_threads)
    report = {"low_res": args.low, "frame_size": args.size, "torch_threads": args.threads,
              "machine": platform.processor() or platform.machine(), "load_average_before": load_before,
              "load_average": list(os.getloadavg()), "rows": rows}
    write_report(report, args.out)
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
