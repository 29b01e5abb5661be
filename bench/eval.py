"""Evaluation throughput: queries per second of a benchmark run at concurrency 1 vs 16, agent and SAM 3 alone.

A synthetic ReasonSeg split (:func:`eval.testing.write_reasonseg`: small labelme-style images, short and
long queries) is written to a temporary folder and run through the real runner
(:func:`eval.runner.run_eval`, the code behind ``sam3-agent eval reasonseg``; the command line itself is
exercised by ``tests/test_eval_cli.py``) with one shared tiny random SAM 3 on CPU. The LLM is the
scripted OpenAI-compatible test server (real HTTP on 127.0.0.1, :class:`eval.testing.AgentScript`)
answering every call after a fixed latency: each query takes two calls (``segment_phrase``, then
``select_masks_and_return``), so at concurrency 1 a query costs about two latencies and the LLM
dominates, as with a real model server. The server runs in a process of its own, as a real one would:
in this process its request parsing would compete with the agent for the GIL.

Each run starts from an empty SAM 3 feature cache and a fresh run folder; a short warm-up run comes
first, and every configuration runs ``--repeats`` times (the summary takes the median queries per
second). Reported per run: wall time of ``run_eval`` (report writing included, about 20 ms),
queries per second, the statuses, and the LLM requests the server saw (in all, and most at once). The
issue's bar: concurrency 16 gives at least 8x the queries per second of concurrency 1. The ``direct``
planner (no LLM) shows SAM 3 alone.

    python -m bench.eval                                    # 32 queries, 300 ms per LLM call, 3 repeats
    python -m bench.eval --samples 8 --latency-ms 50 --repeats 1 --out /tmp/eval.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from agent.llm import LLMConfig
from agent.settings import AgentSettings
from eval.planners import DirectSettings
from eval.runner import RunOptions, run_eval
from eval.tasks import TaskSpec, load_task
from eval.testing import write_reasonseg
from sam3_core import Sam3Engine
from sam3_core.tiny import write_tiny_checkpoint

logger = logging.getLogger("bench.eval")
ROOT = Path(__file__).resolve().parents[1]
BAR = 8.0
#: The scripted LLM server as a child process: prints its URL, serves until stdin closes, prints its stats.
SERVER = """
import json, sys
from eval.testing import AgentScript
from agent.testing import ScriptedLLM
script = AgentScript(delay_s=float(sys.argv[1]))
with ScriptedLLM(responder=script) as server:
    print(server.base_url, flush=True)
    sys.stdin.read()
    stats = {"max_in_flight": script.max_in_flight, "requests": len(server.requests), "errors": server.errors}
print(json.dumps(stats), flush=True)
"""


@contextmanager
def llm_server(latency_s: float) -> Iterator[tuple[str, dict[str, Any]]]:
    """A scripted LLM server in a child process: yields its base URL and a dict filled with its stats at exit."""
    # cwd: ``python -c`` imports from the working folder, so the repository's packages are found uninstalled
    child = subprocess.Popen([sys.executable, "-c", SERVER, str(latency_s)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    stats: dict[str, Any] = {}
    try:
        base_url = child.stdout.readline().strip()
        if not base_url.startswith("http"):
            raise SystemExit("the scripted LLM server did not start")
        yield base_url, stats
    finally:
        out, _ = child.communicate("", timeout=30)
        if out.strip():
            stats.update(json.loads(out.strip().splitlines()[-1]))


async def one_run(engine: Sam3Engine, data: Path, out: Path, planner: str, concurrency: int,
                  args: argparse.Namespace) -> dict[str, Any]:
    """One benchmark run into ``out``; returns its timing and summary."""
    task = load_task(TaskSpec("reasonseg", str(data), "val"))
    options = RunOptions(concurrency=concurrency, limit=args.samples, progress=False, worst_k=0)
    engine.cache.clear()  # every run encodes its images itself
    direct = planner == "direct"
    # the direct planner is given no LLM at all, so it needs no server (and makes no requests)
    serving = nullcontext((None, {"requests": 0, "max_in_flight": 0})) if direct else llm_server(args.latency_ms / 1000)
    with serving as (base_url, server):
        llm = None if direct else LLMConfig(base_url=base_url, model="scripted-model", api_key="bench", max_retries=0,
                                            timeout_s=60)
        settings = (DirectSettings(score_threshold=args.score_threshold) if direct
                    else AgentSettings(score_threshold=args.score_threshold))
        started = time.perf_counter()
        report = await run_eval(task, out, engine, llm, sam3_model="tiny", settings=settings, options=options)
        wall = time.perf_counter() - started
    if server.get("errors"):
        raise SystemExit(f"the scripted server met problems: {server['errors']}")
    queries = report["samples"]["scored"]
    if queries != args.samples or report["failures"]["count"]:
        raise SystemExit(f"{planner} c={concurrency}: {queries} of {args.samples} queries, "
                         f"failures {report['failures']}")
    result = {
        "planner": planner, "concurrency": concurrency, "queries": queries, "wall_s": wall,
        "queries_per_s": queries / wall, "statuses": report["statuses"],
        "mean_llm_calls": report["cost_per_query"]["mean_llm_calls"],
        "mean_seconds_per_query": report["cost_per_query"]["mean_seconds"],
        "llm_requests": server.get("requests"), "max_llm_requests_in_flight": server.get("max_in_flight"),
        "gIoU": report["metrics"]["all"]["gIoU"],
    }
    logger.info("%-6s concurrency %2d: %d queries in %6.2f s = %6.2f queries/s (LLM requests: %s, at once: %s)",
                planner, concurrency, queries, wall, result["queries_per_s"], server.get("requests"),
                server.get("max_in_flight"))
    return result


async def bench(engine: Sam3Engine, data: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Warm-up, then the agent and the direct planner at both concurrencies."""
    warm = argparse.Namespace(**{**vars(args), "samples": min(4, args.samples)})
    await one_run(engine, data, work / "warmup", "agent", 4, warm)
    runs = []
    for repeat in range(args.repeats):
        for planner in ("agent", "direct"):
            for concurrency in (1, args.concurrency):
                out = work / f"{planner}-c{concurrency}-{repeat}"
                runs.append({"repeat": repeat, **await one_run(engine, data, out, planner, concurrency, args)})
    qps = {key: statistics.median(r["queries_per_s"] for r in runs if (r["planner"], r["concurrency"]) == key)
           for key in {(r["planner"], r["concurrency"]) for r in runs}}
    speedup = qps["agent", args.concurrency] / qps["agent", 1]
    summary = {
        "samples": args.samples, "latency_ms": args.latency_ms, "concurrency": args.concurrency,
        "repeats": args.repeats,
        "agent_qps_c1": qps["agent", 1], f"agent_qps_c{args.concurrency}": qps["agent", args.concurrency],
        "agent_speedup": speedup, "bar": BAR, "bar_met": speedup >= BAR,
        "direct_qps_c1": qps["direct", 1], f"direct_qps_c{args.concurrency}": qps["direct", args.concurrency],
        "direct_speedup": qps["direct", args.concurrency] / qps["direct", 1],
    }
    return {"summary": summary, "runs": runs}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=32, help="queries per run (default: 32)")
    parser.add_argument("--latency-ms", type=float, default=300.0, help="fixed latency of every LLM call")
    parser.add_argument("--concurrency", type=int, default=16, help="the concurrency compared with 1")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration (median taken)")
    parser.add_argument("--score-threshold", type=float, default=0.2, help="the tiny model scores about 0.25")
    parser.add_argument("--checkpoint", help="a SAM 3 checkpoint folder (default: a fresh tiny random one)")
    parser.add_argument("--device", default="cpu", help="where SAM 3 runs (default: cpu)")
    parser.add_argument("--out", default="bench/results/eval.json")
    args = parser.parse_args(argv)
    if args.samples < 1 or args.concurrency < 2 or args.repeats < 1:
        parser.error("--samples and --repeats must be >= 1, --concurrency >= 2")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark with command-line ``argv``; writes and returns the report."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        data = write_reasonseg(work / "reasonseg", copies=math.ceil(args.samples / 4))
        checkpoint = args.checkpoint or str(write_tiny_checkpoint(work / "tiny", seed=0))
        with Sam3Engine.from_pretrained(checkpoint, device=args.device, with_tracker=False) as engine:
            report = asyncio.run(bench(engine, data, work, args))
    report.update({"machine": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                   "device": args.device})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    s = report["summary"]
    logger.info("agent (median of %d): %.2f queries/s at concurrency %d vs %.2f at 1 = %.1fx (bar >= %.0fx: %s)",
                args.repeats,
                s[f"agent_qps_c{args.concurrency}"], args.concurrency, s["agent_qps_c1"], s["agent_speedup"], BAR,
                "met" if s["bar_met"] else "MISSED")
    logger.info("direct (SAM 3 alone, no LLM): %.2f queries/s at concurrency %d, %.2f at 1",
                s[f"direct_qps_c{args.concurrency}"], args.concurrency, s["direct_qps_c1"])
    logger.info("written %s", args.out)
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
    logger.setLevel(logging.INFO)
    main()
