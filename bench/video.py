"""Video speed: frames per second against the number of tracked objects (1, 4, 16 by default).

Two modes per object count, each on a fresh session whose objects are added with clicks on frame 0:

* ``track``: the tracker alone (a session with clicks only).
* ``detect+track``: one phrase as well, so the detector runs on every frame too (the thresholds stay at
  the checkpoint's, which random weights never reach, so the tracked objects are exactly the clicked ones).

Figures are the best of ``--repeats`` interleaved runs of ``--frames`` frames (the first frame, the prompted one, is
not timed) and are reported with ratios to the 1-object run, which compare like with like on one machine.

    python -m bench.video                                  # tiny random SAM 3 on CPU
    python -m bench.video --spec mid                       # the mid-size CPU model of bench/engine.py
    python -m bench.video --full-size --device cuda        # the released architecture, bf16 on GPU

Random weights time like the real checkpoint: latency depends on shapes, not values.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sam3_core.tiny import MID_SPEC, TinySpec, full_size_config, tiny_config, write_random_checkpoint
from sam3_core.video import VideoEngine, VideoOptions

logger = logging.getLogger("bench.video")


def make_frames(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """``(count, height, width, 3)`` uint8: a textured background with a bright square moving across."""
    rng = np.random.default_rng(seed)
    background = rng.integers(60, 160, size=(height, width, 3), dtype=np.uint8)
    frames = np.repeat(background[None], count, axis=0)
    side = max(4, min(height, width) // 6)
    for index in range(count):
        x = (index * 3) % max(1, width - side)
        frames[index, height // 3:height // 3 + side, x:x + side] = (240, 220, 40)
    return frames


def click_grid(count: int, height: int, width: int) -> list[list[float]]:
    """``count`` click positions spread over the frame on a regular grid."""
    side = int(np.ceil(np.sqrt(count)))
    return [[(0.5 + i % side) * width / side, (0.5 + i // side) * height / side] for i in range(count)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_session(engine: VideoEngine, frames: np.ndarray, objects: int, with_phrase: bool) -> tuple[float, int]:
    """Seconds per frame of one propagation (first frame excluded) and the bytes its session held at the end."""
    session = engine.start_session(frames)
    if with_phrase:
        engine.add_text_prompts(session, ["object"])
    height, width = frames.shape[1:3]
    for point in click_grid(objects, height, width):
        engine.add_points(session, 0, [point])
    start = None
    timed = 0
    for result in engine.propagate(session, 0):
        _sync(engine.device)
        if start is None:
            start = time.perf_counter()
            continue
        timed += 1
        del result
    elapsed = time.perf_counter() - start
    held = engine.session_info(session).held.bytes
    engine.close_session(session)
    return elapsed / max(timed, 1), held


def bench(engine: VideoEngine, frames: np.ndarray, object_counts: list[int], repeats: int) -> list[dict]:
    """Best-of-``repeats`` seconds per frame for every (mode, objects); repeats are interleaved so a burst
    of load from elsewhere on the machine does not land on one configuration only."""
    configs = [(mode, with_phrase, n) for mode, with_phrase in (("track", False), ("detect+track", True))
               for n in object_counts]
    for _, with_phrase, _ in configs[:: len(object_counts)]:
        time_session(engine, frames[:3], 1, with_phrase)  # warm-up
    runs: dict[tuple, list] = {config: [] for config in configs}
    for _ in range(repeats):
        for config in configs:
            runs[config].append(time_session(engine, frames, config[2], config[1]))
    rows = []
    for (mode, _, objects), samples in runs.items():
        seconds = min(s[0] for s in samples)
        rows.append({"mode": mode, "objects": objects, "ms_per_frame": round(1000 * seconds, 2),
                     "ms_per_frame_median": round(1000 * statistics.median(s[0] for s in samples), 2),
                     "fps": round(1.0 / seconds, 3), "session_held_mb": round(samples[-1][1] / 2**20, 3)})
        logger.info("%-13s %3d objects: %8.1f ms/frame  %7.2f fps", mode, objects, 1000 * seconds, 1 / seconds)
    for row in rows:
        base = next(r for r in rows if r["mode"] == row["mode"] and r["objects"] == object_counts[0])
        row["slowdown_vs_first"] = round(row["ms_per_frame"] / base["ms_per_frame"], 3)
    return rows


def build_engine(args: argparse.Namespace, folder: Path) -> VideoEngine:
    if args.full_size:
        config, size = full_size_config(), 1008
    else:
        spec = MID_SPEC if args.spec == "mid" else TinySpec()
        config, size = tiny_config(spec), spec.image_size
    write_random_checkpoint(folder, config, size, video=True)
    options = VideoOptions(max_sessions=1, hotstart_delay=0)
    return VideoEngine.from_pretrained(str(folder), device=args.device, dtype=args.dtype, options=options)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark with command-line ``argv``; writes and returns the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", choices=["tiny", "mid"], default="tiny", help="CPU model size")
    parser.add_argument("--full-size", action="store_true", help="the released architecture (use with a GPU)")
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda if available)")
    parser.add_argument("--dtype", default=None, help="bf16 / fp32 (default: bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--frames", type=int, default=16, help="frames per timed propagation")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=[240, 320], metavar=("H", "W"), help="video frame size")
    parser.add_argument("--out", default="bench/results/video.json")
    args = parser.parse_args(argv)
    with torch.random.fork_rng():  # seeded without touching the caller's RNG (main() also runs in the tests)
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            engine = build_engine(args, Path(tmp))
    frames = make_frames(args.frames + 1, *args.size)
    rows = bench(engine, frames, args.objects, args.repeats)
    report = {
        "model": "full-size" if args.full_size else args.spec, "device": str(engine.device),
        "dtype": str(engine.dtype).replace("torch.", ""), "frames": args.frames, "frame_size": args.size,
        "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "rows": rows,
    }
    engine.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    logger.info("report written to %s", args.out)
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
