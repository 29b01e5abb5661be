"""Video speed: frames per second against the number of tracked objects (1, 4, 16, 64 by default).

Each configuration runs on a fresh session whose objects are added with clicks on frame 0, in two modes:

* ``track``: the tracker alone (a session with clicks only).
* ``detect+track``: one phrase as well, so the detector runs on every frame too (the thresholds stay at
  the checkpoint's, which random weights never reach, so the tracked objects are exactly the clicked ones).

and along two paths: ``batched`` (all objects of a frame in grouped passes, the engine's default) and
``per-object`` (transformers' one-object-at-a-time loop, ``VideoOptions(batch_objects=False)``).

Figures are the best of ``--repeats`` interleaved runs of ``--frames`` frames (the first frame, the prompted one, is
not timed): wall-clock ms and fps, and the process's CPU time per frame (all threads; steadier than wall time on a
shared machine). Ratios compare like with like within one run: ``slowdown_vs_first`` against the first object
count of the same mode and path, ``speedup_vs_per_object`` of the batched path against the per-object one, and
``flop_ratio_vs_first``: the same comparison in floating-point operations per frame (torch's ``FlopCounterMode``
on one more frame), the cost the network's arithmetic alone sets.

    python -m bench.video                                  # tiny random SAM 3 on CPU
    python -m bench.video --spec mid --frames 6            # the mid-size CPU model of bench/engine.py
    python -m bench.video --spec tiny mid --frames 8 3 --modes track   # both CPU models in one run
    python -m bench.video --full-size --device cuda        # the released architecture, bf16 on GPU

The run ends with a table per model: fps of both paths at each object count and their ratio (wall time and
process CPU time).

Random weights time like the real checkpoint for the networks (latency depends on shapes, not values); the mask
clean-up after them depends on the masks, which random weights make unlike real ones.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.report import write_report
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


def time_session(engine: VideoEngine, frames: np.ndarray, objects: int, with_phrase: bool) -> dict:
    """Wall and CPU seconds per frame of one propagation (first frame excluded), and the bytes held at the end."""
    session = engine.start_session(frames)
    if with_phrase:
        engine.add_text_prompts(session, ["object"])
    height, width = frames.shape[1:3]
    for point in click_grid(objects, height, width):
        engine.add_points(session, 0, [point])
    start = cpu_start = None
    timed = 0
    for result in engine.propagate(session, 0):
        _sync(engine.device)
        if start is None:
            start, cpu_start = time.perf_counter(), time.process_time()
            continue
        timed += 1
        del result
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    held = engine.session_info(session).held.bytes
    engine.close_session(session)
    return {"wall": elapsed / max(timed, 1), "cpu": cpu / max(timed, 1), "held": held}


def count_flops(engine: VideoEngine, frames: np.ndarray, objects: int, with_phrase: bool) -> float:
    """Floating-point operations of one propagated frame (frame 3, or the last of a shorter clip), as torch's
    ``FlopCounterMode`` counts them (matrix products and convolutions; element-wise work counts nothing)."""
    from torch.utils.flop_counter import FlopCounterMode

    session = engine.start_session(frames[:4])
    if with_phrase:
        engine.add_text_prompts(session, ["object"])
    for point in click_grid(objects, *frames.shape[1:3]):
        engine.add_points(session, 0, [point])
    stream = engine.propagate(session, 0)
    for _ in range(min(len(frames), 4) - 1):
        next(stream)
    with FlopCounterMode(display=False) as counter:
        next(stream)
    stream.close()
    engine.close_session(session)
    return float(counter.get_total_flops())


def bench(engines: dict[str, VideoEngine], frames: np.ndarray, object_counts: list[int], modes: list[str],
          repeats: int) -> list[dict]:
    """Best-of-``repeats`` seconds per frame for every (mode, path, objects); repeats are interleaved so a burst
    of load from elsewhere on the machine does not land on one configuration only."""
    # Each repeat runs the two paths back to back at every object count (A/B pairs), so slow spells from
    # other processes hit both paths of a pair alike.
    configs = [(mode, path, n) for mode in modes for n in object_counts for path in engines]
    for mode in modes:
        for engine in engines.values():
            time_session(engine, frames[:3], 1, mode == "detect+track")  # warm-up
    runs: dict[tuple, list] = {config: [] for config in configs}
    for _ in range(repeats):
        for config in configs:
            mode, path, objects = config
            runs[config].append(time_session(engines[path], frames, objects, mode == "detect+track"))
    rows = []
    for mode, path, objects in sorted(runs, key=lambda c: (modes.index(c[0]), list(engines).index(c[1]),
                                                          object_counts.index(c[2]))):
        samples = runs[(mode, path, objects)]
        seconds = min(s["wall"] for s in samples)
        flops = count_flops(engines[path], frames, objects, mode == "detect+track")
        rows.append({"mode": mode, "path": path, "objects": objects, "gflop_per_frame": round(flops / 1e9, 4),
                     "ms_per_frame": round(1000 * seconds, 2),
                     "ms_per_frame_median": round(1000 * statistics.median(s["wall"] for s in samples), 2),
                     "cpu_ms_per_frame": round(1000 * min(s["cpu"] for s in samples), 2),
                     "fps": round(1.0 / seconds, 3), "session_held_mb": round(samples[-1]["held"] / 2**20, 3)})
    for row in rows:
        base = _row(rows, row["mode"], row["path"], object_counts[0])
        row["slowdown_vs_first"] = round(row["ms_per_frame"] / base["ms_per_frame"], 3)
        row["cpu_slowdown_vs_first"] = round(row["cpu_ms_per_frame"] / base["cpu_ms_per_frame"], 3)
        row["flop_ratio_vs_first"] = round(row["gflop_per_frame"] / max(base["gflop_per_frame"], 1e-12), 3)
        other = _row(rows, row["mode"], "per-object", row["objects"])
        if row["path"] == "batched" and other is not None:
            row["speedup_vs_per_object"] = round(other["ms_per_frame"] / row["ms_per_frame"], 3)
            row["cpu_speedup_vs_per_object"] = round(other["cpu_ms_per_frame"] / row["cpu_ms_per_frame"], 3)
    for row in rows:
        logger.info("%-13s %-10s %3d objects: %8.1f ms/frame %7.2f fps  x%-6.2f vs first  cpu %8.1f ms  x%-6.2f  "
                    "%.3f GFLOP x%-5.2f %s",
                    row["mode"], row["path"], row["objects"], row["ms_per_frame"], row["fps"],
                    row["slowdown_vs_first"], row["cpu_ms_per_frame"], row["cpu_slowdown_vs_first"],
                    row["gflop_per_frame"], row["flop_ratio_vs_first"],
                    f"batched x{row['speedup_vs_per_object']:.2f} faster" if "speedup_vs_per_object" in row else "")
    return rows


def _row(rows: list[dict], mode: str, path: str, objects: int) -> dict | None:
    return next((r for r in rows if (r["mode"], r["path"], r["objects"]) == (mode, path, objects)), None)


def build_engines(args: argparse.Namespace, model: str, folder: Path) -> dict[str, VideoEngine]:
    """One engine per path (``batched``, ``per-object``) on the same random checkpoint of ``model``."""
    if model == "full-size":
        config, size = full_size_config(), 1008
    else:
        spec = MID_SPEC if model == "mid" else TinySpec()
        config, size = tiny_config(spec), spec.image_size
    write_random_checkpoint(folder, config, size, video=True)
    engines = {}
    for path in args.paths:
        options = VideoOptions(max_sessions=1, hotstart_delay=0, batch_objects=path == "batched",
                               max_objects_per_pass=args.max_objects_per_pass)
        engines[path] = VideoEngine.from_pretrained(str(folder), device=args.device, dtype=args.dtype,
                                                    options=options)
    return engines


def summary(rows: list[dict], model: str, mode: str) -> str:
    """A text table: fps of both paths per object count, their ratios (wall and CPU time), and the batched
    path's cost against its first object count in time and in counted FLOPs (what the arithmetic alone would
    give if every operation ran equally fast)."""
    lines = [f"{model} / {mode}: fps by object count",
             f"{'objects':>8} {'batched fps':>12} {'per-object fps':>15} {'ratio (wall)':>13} {'ratio (cpu)':>12} "
             f"{'time vs first':>14} {'FLOPs vs first':>15}"]
    for row in rows:
        if row["model"] != model or row["mode"] != mode or row["path"] != "batched":
            continue
        other = _row([r for r in rows if r["model"] == model], mode, "per-object", row["objects"])
        lines.append(f"{row['objects']:>8} {row['fps']:>12.2f} {other['fps'] if other else float('nan'):>15.2f} "
                     f"{row.get('speedup_vs_per_object', float('nan')):>13.2f} "
                     f"{row.get('cpu_speedup_vs_per_object', float('nan')):>12.2f} "
                     f"{row['slowdown_vs_first']:>14.2f} {row['flop_ratio_vs_first']:>15.2f}")
    return "\n".join(lines)


def full_size_flops(objects: list[int]) -> dict:
    """FLOPs per frame of the released architecture when tracking N objects, counted on meta tensors (nothing
    is computed, so this runs anywhere in seconds): the image backbone with the tracker's neck once per frame,
    and per object the memory attention over a full memory window (``num_maskmem`` frames and the object
    pointers), the mask decoder and the memory encoder."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import Sam3VideoModel
    from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

    from sam3_core.video import batched

    def count(step) -> float:
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            step()
        return float(counter.get_total_flops())

    with torch.device("meta"):
        model = Sam3VideoModel(full_size_config()).eval()
    tracker = model.tracker_model
    (height, width), channels, mem = tracker.backbone_feature_sizes[-1], tracker.hidden_dim, tracker.mem_dim
    tokens, pointers = height * width, tracker.config.max_object_pointers_in_encoder * (channels // mem)
    meta = functools.partial(torch.empty, device="meta")
    pixels = meta(1, 3, tracker.image_size, tracker.image_size)
    image = count(lambda: model.get_vision_features_for_tracker(vision_embeds=Sam3VisionEncoderOutput(
        last_hidden_state=model.detector_model.vision_encoder.backbone(pixels).last_hidden_state)))
    memory = meta(tracker.num_maskmem * tokens + pointers, 1, mem)
    side = 4 * tracker.prompt_encoder.mask_input_size[0]
    per_object = (
        count(lambda: batched.memory_attention(tracker.memory_attention, meta(tokens, 1, channels),
                                               meta(tokens, 1, channels), memory, memory, pointers))
        + count(lambda: batched.decode_masks(tracker, meta(1, channels, height, width),
                                             [meta(1, channels // 8, 4 * height, 4 * width),
                                              meta(1, channels // 4, 2 * height, 2 * width)], True, high_res=False))
        + count(lambda: tracker.memory_encoder(meta(1, channels, height, width), meta(1, 1, side, side))))
    rows = [{"objects": n, "gflop_per_frame": round((image + n * per_object) / 1e9, 1),
             "flop_ratio_vs_first": round((image + n * per_object) / (image + objects[0] * per_object), 3)}
            for n in objects]
    logger.info("released architecture: %.1f GFLOP per frame for the image backbone + tracker neck, %.1f GFLOP "
                "per tracked object", image / 1e9, per_object / 1e9)
    for row in rows:
        logger.info("%4d objects: %9.1f GFLOP per frame, x%.2f vs %d", row["objects"], row["gflop_per_frame"],
                    row["flop_ratio_vs_first"], objects[0])
    return {"image_gflop": round(image / 1e9, 1), "per_object_gflop": round(per_object / 1e9, 1), "rows": rows}


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark with command-line ``argv``; writes and returns the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", nargs="+", choices=["tiny", "mid"], default=["tiny"],
                        help="CPU model size(s), benchmarked one after the other in this run")
    parser.add_argument("--full-size", action="store_true", help="the released architecture (use with a GPU)")
    parser.add_argument("--full-size-flops", action="store_true",
                        help="only count the released architecture's FLOPs per frame by object count (no weights, "
                             "no timing; seconds on any machine)")
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda if available)")
    parser.add_argument("--dtype", default=None, help="bf16 / fp32 (default: bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--modes", nargs="+", choices=["track", "detect+track"], default=["track", "detect+track"])
    parser.add_argument("--paths", nargs="+", choices=["batched", "per-object"], default=["batched", "per-object"])
    parser.add_argument("--max-objects-per-pass", type=int, default=VideoOptions.max_objects_per_pass,
                        help="objects per batched pass (default: the engine's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--frames", type=int, nargs="+", default=[16],
                        help="frames per timed propagation: one value, or one per --spec")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=[240, 320], metavar=("H", "W"), help="video frame size")
    parser.add_argument("--out", default="bench/results/video.json")
    args = parser.parse_args(argv)
    if args.full_size_flops:
        return full_size_flops(args.objects)
    models = ["full-size"] if args.full_size else list(dict.fromkeys(args.spec))
    if len(args.frames) not in (1, len(models)):
        parser.error(f"--frames takes one value or one per model ({len(models)}), got {len(args.frames)}")
    frame_counts = dict(zip(models, args.frames * len(models) if len(args.frames) == 1 else args.frames))
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = list(os.getloadavg())
    rows: list[dict] = []
    device = dtype = None
    for model in models:
        with torch.random.fork_rng():  # seeded without touching the caller's RNG (main() also runs in the tests)
            torch.manual_seed(0)
            with tempfile.TemporaryDirectory() as tmp:
                engines = build_engines(args, model, Path(tmp))
        frames = make_frames(frame_counts[model] + 1, *args.size)
        logger.info("%s model, %d frames per propagation", model, frame_counts[model])
        rows += [{"model": model, **row} for row in bench(engines, frames, args.objects, args.modes, args.repeats)]
        engine = next(iter(engines.values()))
        device, dtype = str(engine.device), str(engine.dtype).replace("torch.", "")
        for each in engines.values():
            each.close()
    for model in models:
        for mode in args.modes:
            logger.info("%s", summary(rows, model, mode))
    report = {
        "model": models[0] if len(models) == 1 else "+".join(models), "models": models, "device": device,
        "dtype": dtype, "frames": frame_counts, "frame_size": args.size,
        "max_objects_per_pass": args.max_objects_per_pass,
        "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "load_average_before": load_before, "load_average": list(os.getloadavg()), "rows": rows,
    }
    write_report(report, args.out)
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
