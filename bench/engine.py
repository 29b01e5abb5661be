"""Engine speed: batched phrases on a cached encoding vs separate un-cached calls, and micro-batching.

Everything is measured in one run on one machine and reported as ratios, so the figures compare
like with like. The baseline is the official SAM 3 Agent's way of calling SAM 3: one plain
``Sam3Processor`` + ``Sam3Model`` call per phrase, re-encoding the image every time.

    python -m bench.engine                                  # mid-size random SAM 3 on CPU
    python -m bench.engine --full-size --device cuda        # the released architecture, bf16 on GPU

Random weights time like the real checkpoint: latency depends on shapes, not values.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from bench.report import write_report
from sam3_core import EngineOptions, Sam3Engine
from sam3_core.tiny import MID_SPEC, full_size_config, tiny_config, write_random_checkpoint

logger = logging.getLogger("bench.engine")
PHRASES = ["person", "dog", "red car", "tree", "bicycle", "traffic light", "bench", "bird", "cup", "chair",
           "umbrella", "handbag", "bottle", "sign", "window", "shoe"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall seconds of ``fn`` over ``repeats`` runs (after two warm-up runs)."""
    return timed_pair(fn, None, device, repeats)[0]


def timed_pair(first: Callable[[], object], second: Callable[[], object] | None, device: torch.device,
               repeats: int) -> tuple[float, float]:
    """Median seconds of two functions measured alternately, so that load from other processes falls
    on both alike; each is warmed up twice (new shapes and a new worker thread cost on first use)."""
    funcs = [f for f in (first, second) if f is not None]
    for fn in funcs:
        fn()
        fn()
    samples: list[list[float]] = [[] for _ in funcs]
    for _ in range(repeats):
        for fn, bucket in zip(funcs, samples):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            bucket.append(time.perf_counter() - start)
    medians = [statistics.median(bucket) for bucket in samples]
    return medians[0], (medians[1] if second is not None else 0.0)


def make_images(count: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(*size, 3), dtype=np.uint8) for _ in range(count)]


def baseline_call(model, processor, image: np.ndarray, phrase: str, device, dtype) -> None:
    """One un-cached call the official agent's way: preprocess, full forward, post-process."""
    inputs = processor(images=Image.fromarray(image), text=phrase, return_tensors="pt").to(device)
    inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
    with torch.inference_mode():
        outputs = model(**inputs)
    processor.post_process_instance_segmentation(outputs, threshold=0.5, mask_threshold=0.5,
                                                 target_sizes=[image.shape[:2]])


def bench_phrases(engine: Sam3Engine, model, processor, image, ks, repeats) -> list[dict]:
    """K phrases: one engine call (image not cached) vs K separate un-cached baseline calls."""
    rows = []
    for k in ks:
        phrases = PHRASES[:k]

        def engine_uncached(phrases: list[str] = phrases) -> None:
            engine.cache.clear()
            engine.segment(image, phrases)

        def separate(phrases: list[str] = phrases) -> None:
            for phrase in phrases:
                baseline_call(model, processor, image, phrase, engine.device, engine.dtype)

        engine_s, baseline_s = timed_pair(engine_uncached, separate, engine.device, repeats)
        rows.append({"phrases": k, "engine_ms": engine_s * 1e3, "separate_uncached_ms": baseline_s * 1e3,
                     "speedup": baseline_s / engine_s})
        logger.info("K=%2d  engine %.1f ms  separate %.1f ms  speed-up %.2fx", k, engine_s * 1e3,
                    baseline_s * 1e3, baseline_s / engine_s)
    return rows


def bench_cached(engine: Sam3Engine, image, repeats) -> dict:
    """Latency split on a cached image: first phrase, and each extra phrase in the same call."""
    engine.cache.clear()
    encode_s = timed(lambda: (engine.cache.clear(), engine.encode(image)), engine.device, repeats)
    one = timed(lambda: engine.segment(image, PHRASES[:1]), engine.device, repeats)
    sixteen = timed(lambda: engine.segment(image, PHRASES[:16]), engine.device, repeats)
    return {"encode_ms": encode_s * 1e3, "cached_1_phrase_ms": one * 1e3,
            "extra_phrase_ms": (sixteen - one) / 15 * 1e3, "end_to_end_1_phrase_ms": (encode_s + one) * 1e3}


def flop_ratio(engine: Sam3Engine, image) -> dict:
    """FLOPs of one image encoding and of one extra phrase (torch's FlopCounterMode): the ratio bounds
    what caching and batching can gain, and is how a scaled-down model is compared with the real one."""
    from torch.utils.flop_counter import FlopCounterMode

    from sam3_core.detector import batched_vision_embeds

    detector = engine._handler.detector
    pixels = engine.processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            vision = detector.get_vision_features(pixel_values=pixels.to(engine.device, engine.dtype))
        encode = counter.get_total_flops()
        features = engine.encode(image)
        totals = {}
        for n in (1, 4):
            ids = torch.full((n, 32), 1, dtype=torch.long, device=engine.device)
            with FlopCounterMode(display=False) as counter:
                detector(vision_embeds=batched_vision_embeds([(features, n)]), input_ids=ids,
                         attention_mask=torch.ones_like(ids))
            totals[n] = counter.get_total_flops()
    del vision
    per_phrase = (totals[4] - totals[1]) / 3
    return {"encode_gflop": encode / 1e9, "per_phrase_gflop": per_phrase / 1e9,
            "encode_per_phrase": encode / per_phrase}


def bench_concurrency(engine: Sam3Engine, images, repeats) -> dict:
    """N callers with different (un-cached) images and one phrase each: concurrent vs sequential."""

    def sequential() -> None:
        engine.cache.clear()
        for image in images:
            engine.segment(image, ["person"])

    async def together() -> None:
        await asyncio.gather(*(engine.asegment(image, ["person"]) for image in images))

    def concurrent() -> None:
        engine.cache.clear()
        asyncio.run(together())

    seq_s, conc_s = timed_pair(sequential, concurrent, engine.device, repeats)
    logger.info("%d callers: sequential %.1f ms, concurrent %.1f ms, speed-up %.2fx", len(images), seq_s * 1e3,
                conc_s * 1e3, seq_s / conc_s)
    return {"callers": len(images), "sequential_ms": seq_s * 1e3, "concurrent_ms": conc_s * 1e3,
            "speedup": seq_s / conc_s, "images_per_s_concurrent": len(images) / conc_s}


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark with command-line ``argv``; writes and returns the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full-size", action="store_true", help="the released architecture (1008 px)")
    parser.add_argument("--tiny", action="store_true", help="the test-sized model (smoke runs)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--out", default="bench/results/engine.json")
    args = parser.parse_args(argv)
    with torch.no_grad():  # a context, not set_grad_enabled: main() also runs inside the test process
        return run(args)


def run(args: argparse.Namespace) -> dict:
    """The whole benchmark for parsed ``args``."""
    if args.full_size:
        config, image_size, label = full_size_config(), 1008, "full-size"
    elif args.tiny:
        config, image_size, label = tiny_config(), 112, "tiny"
    else:
        config, image_size, label = tiny_config(MID_SPEC), MID_SPEC.image_size, "mid-size"
    with tempfile.TemporaryDirectory() as folder:
        write_random_checkpoint(folder, config, image_size)
        engine = Sam3Engine.from_pretrained(folder, device=args.device, dtype=args.dtype, with_tracker=False,
                                            options=EngineOptions(max_wait_ms=5))
        from transformers import Sam3Model, Sam3Processor

        model = Sam3Model.from_pretrained(folder).to(engine.device, engine.dtype).eval()
        processor = Sam3Processor.from_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    logger.info("%s SAM 3 (%.1fM parameters, %d px) on %s in %s", label, params / 1e6, image_size,
                engine.device, engine.dtype)
    images = make_images(args.callers, (480, 640))
    report = {
        "model": label, "parameters": params, "image_size": image_size, "device": str(engine.device),
        "dtype": str(engine.dtype), "machine": platform.platform(), "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(engine.device) if engine.device.type == "cuda" else None,
        "phrases": bench_phrases(engine, model, processor, images[0], [1, 4, 16], args.repeats),
        "flops": flop_ratio(engine, images[0]),
        "cached": bench_cached(engine, images[0], args.repeats),
        "concurrency": bench_concurrency(engine, images, args.repeats),
    }
    if engine.device.type == "cuda":
        report["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(engine.device) / 2**30
    engine.close()
    write_report(report, args.out)
    logger.info("FLOPs: encode %.1f G, each extra phrase %.1f G, ratio %.1f (released SAM 3: 18.1)",
                report["flops"]["encode_gflop"], report["flops"]["per_phrase_gflop"],
                report["flops"]["encode_per_phrase"])
    cached = report["cached"]
    logger.info("cached image: encode %.1f ms, first phrase %.1f ms, each extra phrase %.2f ms",
                cached["encode_ms"], cached["cached_1_phrase_ms"], cached["extra_phrase_ms"])
    logger.info("written %s", args.out)
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
