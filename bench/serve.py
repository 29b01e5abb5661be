"""HTTP serving load test: requests/s and p50/p99 latency of ``POST /v1/segment`` at several concurrencies.

The server runs as its own process (``python -m cli.serve serve``) on loopback, so its memory is
measured alone: RSS after warm-up and after the load (and the peak) show whether memory stays bounded.
Requests cycle through a pool of distinct images (``--images``; the engine's cache holds them after
the first round) and phrases; every response must be HTTP 200.

    python -m bench.serve                                   # tiny random SAM 3 on CPU, 1/8/32 callers
    python -m bench.serve --model /path/to/sam3 --requests 500 --levels 1 8 32 64

The default tiny checkpoint has random weights: the figures measure the serving path (HTTP, JSON,
image decoding, batching, RLE), not SAM 3's real cost.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from bench.report import write_report

ROOT = Path(__file__).resolve().parents[1]
PHRASES = ["person", "dog", "red car", "tree", "cup", "chair", "bottle", "window"]
logger = logging.getLogger("bench.serve")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> dict[str, float]:
    """Resident and peak resident memory of a process, in MiB (Linux ``/proc``)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[name].split()[0]) / 1024 for key, name in (("rss", "VmRSS"), ("peak", "VmHWM"))}


def make_bodies(count: int, size: tuple[int, int], seed: int = 0) -> list[dict[str, Any]]:
    """JSON bodies: ``count`` distinct PNG images, two phrases each."""
    rng = np.random.default_rng(seed)
    bodies = []
    for index in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)).save(buffer, format="PNG")
        phrases = [PHRASES[index % len(PHRASES)], PHRASES[(index + 3) % len(PHRASES)]]
        bodies.append({"image": {"base64": base64.b64encode(buffer.getvalue()).decode()}, "phrases": phrases})
    return bodies


def start_server(model: str, port: int, log_path: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "cli.serve", "serve", "--model", model, "--host", "127.0.0.1",
               "--port", str(port), "--score-threshold", "0.2", "--no-chat-page"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    with log_path.open("w") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(base_url: str, process: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not become ready")


async def run_level(client: httpx.AsyncClient, bodies: list[dict[str, Any]], concurrency: int,
                    requests: int) -> dict[str, Any]:
    """``requests`` POSTs by ``concurrency`` callers; latency per request, throughput over the whole run."""
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))

    async def caller() -> None:
        for index in counter:
            start = time.perf_counter()
            try:
                response = await client.post("/v1/segment", json=bodies[index % len(bodies)])
            except httpx.HTTPError as exc:  # counted, so one failure does not hide the figures
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200:
                errors.append(f"HTTP {response.status_code}: {response.text[:200]}")

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    ordered = sorted(latencies)
    return {"concurrency": concurrency, "requests": requests, "errors": len(errors), "first_errors": errors[:3],
            "requests_per_s": round(requests / wall, 2), "p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 2),
            "wall_s": round(wall, 2)}


async def load_test(base_url: str, bodies: list[dict[str, Any]], levels: list[int], requests: int,
                    pid: int | None = None) -> list[dict]:
    """One :func:`run_level` per concurrency; with ``pid``, the server's RSS after each level too."""
    limits = httpx.Limits(max_connections=max(levels), max_keepalive_connections=max(levels))
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:
        rows = []
        for concurrency in levels:
            row = await run_level(client, bodies, concurrency, requests)
            if pid is not None:
                row["rss_mb_after"] = round(rss_mb(pid)["rss"], 1)
            logger.info("concurrency %3d: %7.1f req/s  p50 %8.1f ms  p99 %8.1f ms  errors %d  server RSS %s MiB",
                        concurrency, row["requests_per_s"], row["p50_ms"], row["p99_ms"], row["errors"],
                        row.get("rss_mb_after", "?"))
            rows.append(row)
        return rows


def benchmark(args: argparse.Namespace, model: str, workdir: Path) -> dict[str, Any]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    process = start_server(model, port, workdir / "server.log")
    try:
        wait_ready(base_url, process)
        bodies = make_bodies(args.images, (args.height, args.width))
        asyncio.run(load_test(base_url, bodies, [1], len(bodies)))  # warm-up: every image encoded and cached
        before = rss_mb(process.pid)
        rows = asyncio.run(load_test(base_url, bodies, args.levels * args.rounds, args.requests, process.pid))
        after = rss_mb(process.pid)
        metrics = httpx.get(f"{base_url}/metrics", timeout=10).text
    except BaseException:
        logger.error("server log:\n%s", (workdir / "server.log").read_text()[-3000:])
        raise
    finally:
        process.terminate()
        process.wait(timeout=30)
    hits = next((float(line.split()[-1]) for line in metrics.splitlines()
                 if line.startswith("sam3_engine_cache_hits_total")), None)
    return {"model": model, "image_hw": [args.height, args.width], "distinct_images": args.images,
            "levels": rows, "rss_mb": {"after_warmup": round(before["rss"], 1), "after_load": round(after["rss"], 1),
                                       "peak": round(after["peak"], 1)},
            "cache_hits": hits, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                            "python": platform.python_version()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint folder or hub id (default: a tiny random one, written now)")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32], help="concurrencies to test")
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    parser.add_argument("--images", type=int, default=16, help="distinct images the requests cycle through")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the levels (RSS must level off)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--out", default="bench/results/serve.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        model = args.model
        if model is None:
            from sam3_core.tiny import write_tiny_checkpoint

            model = str(write_tiny_checkpoint(Path(tmp) / "tiny", seed=0))
        report = benchmark(args, model, Path(tmp))
    rss = report["rss_mb"]
    logger.info("server RSS: %.1f MiB after warm-up, %.1f MiB after the load (peak %.1f MiB)",
                rss["after_warmup"], rss["after_load"], rss["peak"])
    write_report(report, args.out)
    return 1 if any(row["errors"] for row in report["levels"]) else 0


if __name__ == "__main__":
    sys.exit(main())
