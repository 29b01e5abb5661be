"""Evaluation throughput: queries per second of a benchmark run at concurrency 1 vs 16, agent and SAM 3 alone.

A synthetic ReasonSeg split (:func:`eval.testing.write_reasonseg`: small labelme-style images, short and
long queries) is written to a temporary folder and run through the real runner
(:func:`eval.runner.run_eval`, the code behind ``sam3-agent eval reasonseg``; the command line itself is
exercised by ``tests/test_eval_cli.py``) with one shared tiny random SAM 3 on CPU. The LLM is the
scripted OpenAI-compatible test server (real HTTP on 127.0.0.1, :class:`eval.testing.AgentScript`)
answering every call after a fixed latency: each query takes two calls (``segment_phrase``, then
``select_masks_and_return``), so at concurrency 1 a query costs about two latencies and the LLM
dominates, as with a real model server. The server runs in a process of its own, as a real one would:
in this process its request parsing would compete with the agent for the GIL; and it keeps connections
open (HTTP/1.1), as a real one does: closing each after its reply made the agent open a new TCP connection
for every LLM call, work on its event loop that a real deployment does not do.

Each run starts from an empty SAM 3 feature cache and a fresh run folder; a short warm-up run comes
first, and every configuration runs ``--repeats`` times (the summary takes the median queries per
second). Reported per run: wall time of ``run_eval`` (report writing included, about 20 ms),
queries per second, the statuses, and the LLM requests the server saw (in all, and most at once). The
issue's bar: concurrency 16 gives at least 8x the queries per second of concurrency 1. The ``direct``
planner (no LLM) shows SAM 3 alone.

The **limit** is what concurrency ``C`` could reach if nothing but the LLM's latency and SAM 3 set the
pace: each query waits ``k`` LLM calls of ``L`` seconds (in parallel with other queries) and needs ``D``
seconds of the one SAM 3 worker, so (a closed system's asymptotic bound) at most
``min(C / (k L + D), 1 / D)`` queries per second. ``k`` and ``L`` are measured at concurrency ``C`` from
the queries' own timings (``L``: mean seconds per LLM call as the agent saw it, the scripted server's
queueing and HTTP included; ``limit_at_configured_latency`` uses the configured latency instead), ``D``
is SAM 3's time per query when batched: the direct planner's wall time per query at concurrency ``C``.
The report gives the limit in queries per second, as a ratio to the agent at concurrency 1, and the
fraction of it the agent reached (the issue's goal: within 10 %, i.e. at least 0.9). On a shared machine
the direct planner's run and the agent's run meet different loads, so the report also gives the limit
from each agent run's own figures: ``D`` as the SAM 3 worker's busy seconds per query during that run
(batches timed by :class:`sam3_core.batching.MicroBatcher`) and ``L`` as above.

Two more versions of the limit are printed beside it, each named as such. **For a run of N queries**
(``finite_run_limit``): the asymptotic bound cannot be reached by a short run, because the SAM 3 worker's
``N D`` seconds are followed by at least the last query's closing LLM call (``L``): the run's wall time is at
least ``max(N D + L, N (k L + D) / C)``. With 32 queries, 300 ms calls and ``D`` about 43 ms that is 18 %
below ``1 / D``, so the default is 128 queries at concurrency ``C`` (3 % below), and 32 at concurrency 1
(``--c1-samples``). **Counting the agent's own CPU** (``limit_with_agent_cpu``): the issue's limit leaves
out the agent's own work between its LLM and SAM 3 calls (prompt and overlay building, image encoding for
the LLM, HTTP and JSON, the graph); ``a``, the agent run's process CPU per query less the direct planner's,
lies on each query's path, and all the CPU (``c`` seconds per query, SAM 3 included) shares the machine's
``P`` cores: ``min(C / (k L + D + a), 1 / D, P / c)``.

The SAM 3 worker runs torch with one thread (``--sam-threads 1``, :attr:`sam3_core.engine.EngineOptions.threads`;
the direct planner's ``D`` is measured with the same engine): this machine's 2 cores are shared with the agent's
event loop and with other processes, and with torch's default of a thread per core a batch of the tiny model
took 10-30x longer whenever another process kept the cores busy (direct planner 3-8 queries/s against about
100 with one thread, in adjacent runs), which made both the limit and the agent's throughput a measure of the
neighbours' load. ``--sam-threads 0`` keeps torch's default.

Each run also reports where its queries' time went (from their traces: waiting for the LLM, for SAM 3
including its queue, and the rest), how busy the SAM 3 worker was, and its mean batch size; and the
load average is logged at the start and at the end.

    python -m bench.eval                        # 128 queries (32 at concurrency 1), 300 ms per LLM call, 3 repeats
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
from bench.report import write_report
from eval.planners import DirectSettings
from eval.records import PREDICTIONS_FILE
from eval.runner import RunOptions, run_eval
from eval.tasks import TaskSpec, load_task
from eval.testing import write_reasonseg
from sam3_core import Sam3Engine
from sam3_core.engine import EngineOptions
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
with ScriptedLLM(responder=script, keep_alive=True) as server:
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
    samples = args.samples if concurrency > 1 else min(args.samples, args.c1_samples)
    options = RunOptions(concurrency=concurrency, limit=samples, progress=False, worst_k=0, ramp=args.ramp)
    engine.cache.clear()  # every run encodes its images itself
    direct = planner == "direct"
    # the direct planner is given no LLM at all, so it needs no server (and makes no requests)
    serving = nullcontext((None, {"requests": 0, "max_in_flight": 0})) if direct else llm_server(args.latency_ms / 1000)
    with serving as (base_url, server):
        llm = None if direct else LLMConfig(base_url=base_url, model="scripted-model", api_key="bench", max_retries=0,
                                            timeout_s=60)
        settings = (DirectSettings(score_threshold=args.score_threshold) if direct
                    else AgentSettings(score_threshold=args.score_threshold))
        before = engine.batch_stats()
        started, cpu_started = time.perf_counter(), time.process_time()
        report = await run_eval(task, out, engine, llm, sam3_model="tiny", settings=settings, options=options)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        after = engine.batch_stats()
        busy, batches = after.busy_s - before.busy_s, after.batches - before.batches
    if server.get("errors"):
        raise SystemExit(f"the scripted server met problems: {server['errors']}")
    queries = report["samples"]["scored"]
    if queries != samples or report["failures"]["count"]:
        raise SystemExit(f"{planner} c={concurrency}: {queries} of {samples} queries, "
                         f"failures {report['failures']}")
    result = {
        **time_split(out), "planner": planner, "concurrency": concurrency, "queries": queries, "wall_s": wall,
        "queries_per_s": queries / wall, "statuses": report["statuses"], "worker_busy_s_per_query": busy / queries,
        "worker_busy_fraction": busy / wall, "batches": batches,
        "mean_batch_size": (after.requests - before.requests) / batches if batches else 0.0,
        "cpu_s_per_query": cpu / queries,
        "mean_llm_calls": report["cost_per_query"]["mean_llm_calls"],
        "mean_seconds_per_query": report["cost_per_query"]["mean_seconds"],
        "llm_requests": server.get("requests"), "max_llm_requests_in_flight": server.get("max_in_flight"),
        "gIoU": report["metrics"]["all"]["gIoU"],
    }
    logger.info("%-6s concurrency %2d: %d queries in %6.2f s = %6.2f queries/s (LLM requests: %s, at once: %s)",
                planner, concurrency, queries, wall, result["queries_per_s"], server.get("requests"),
                server.get("max_in_flight"))
    return result


def time_split(out: Path) -> dict[str, float]:
    """Where a finished run's queries spent their time, from its predictions: mean seconds per LLM call, and
    per query the seconds waiting for the LLM, for SAM 3 (queue and batch) and the rest (the agent's own
    work, its waits for the CPU and the GIL included)."""
    lines = (out / PREDICTIONS_FILE).read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    calls = sum(r["llm_calls"] for r in records)

    def mean(key: str) -> float:
        return statistics.mean(r.get(key, 0.0) for r in records) if records else 0.0

    return {
        "llm_s_per_call": sum(r.get("model_s", 0.0) for r in records) / calls if calls else 0.0,
        "sam_s_per_query": mean("sam_s"), "llm_s_per_query": mean("model_s"), "query_s": mean("seconds"),
        "other_s_per_query": mean("seconds") - mean("model_s") - mean("sam_s"),
    }


def concurrency_limit(concurrency: int, llm_calls: float, llm_s: float, sam_s: float) -> float:
    """Most queries per second at ``concurrency`` when only the LLM and SAM 3 take time (see the module doc).

    ``llm_calls`` LLM calls of ``llm_s`` seconds per query run concurrently across queries; ``sam_s`` seconds
    per query of the single SAM 3 worker do not.
    """
    if sam_s <= 0:
        return concurrency / (llm_calls * llm_s) if llm_calls * llm_s > 0 else math.inf
    return min(concurrency / (llm_calls * llm_s + sam_s), 1.0 / sam_s)


def finite_run_limit(queries: int, concurrency: int, llm_calls: float, llm_s: float, sam_s: float) -> float:
    """Most queries per second of a run of ``queries`` queries (``concurrency_limit`` is the long-run one).

    Two lower bounds on the run's wall time: the SAM 3 worker's ``queries * sam_s`` seconds, after which the
    last query still makes its closing LLM call (``llm_s``: the answer comes after the last SAM 3 call);
    and ``queries / concurrency`` queries one after another in each slot, each ``llm_calls * llm_s + sam_s``.
    """
    wall = max(queries * sam_s + (llm_s if llm_calls > 0 else 0.0),
               queries * (llm_calls * llm_s + sam_s) / concurrency)
    return queries / wall if wall > 0 else math.inf


def agent_cpu_limit(concurrency: int, llm_calls: float, llm_s: float, sam_s: float, agent_cpu_s: float,
                    cpu_s: float, cores: int) -> float:
    """The limit when the agent's own CPU work counts too: ``agent_cpu_s`` per query (the agent run's process
    CPU per query less the direct planner's) lies on each query's path between its LLM and SAM 3 calls, and
    all the process's CPU (``cpu_s`` per query, SAM 3 included) shares ``cores`` cores."""
    chain = concurrency / (llm_calls * llm_s + sam_s + max(0.0, agent_cpu_s))
    return min(chain, 1.0 / sam_s if sam_s > 0 else math.inf, cores / cpu_s if cpu_s > 0 else math.inf)


def limits(runs: list[dict[str, Any]], qps: dict[tuple[str, int], float], args: argparse.Namespace) -> dict[str, Any]:
    """The concurrency limit (measured and at the configured latency) and how close the agent came to it."""
    c = args.concurrency

    def med(planner: str, key: str) -> float:
        return statistics.median(r[key] for r in runs if (r["planner"], r["concurrency"]) == (planner, c))

    calls, llm_s, sam_s = med("agent", "mean_llm_calls"), med("agent", "llm_s_per_call"), 1.0 / qps["direct", c]
    limit = concurrency_limit(c, calls, llm_s, sam_s)
    configured = concurrency_limit(c, calls, args.latency_ms / 1000, sam_s)
    finite = finite_run_limit(args.samples, c, calls, llm_s, sam_s)
    agent_cpu = med("agent", "cpu_s_per_query") - med("direct", "cpu_s_per_query")
    with_cpu = agent_cpu_limit(c, calls, llm_s, sam_s, agent_cpu, med("agent", "cpu_s_per_query"), os.cpu_count() or 1)
    return {
        "limit_llm_calls_per_query": calls, "limit_llm_s_per_call": llm_s, "limit_sam_s_per_query": sam_s,
        "agent_sam_s_per_query": med("agent", "sam_s_per_query"),
        "limit_qps": limit, "limit_speedup": limit / qps["agent", 1],
        "fraction_of_limit": qps["agent", c] / limit, "within_10pct_of_limit": qps["agent", c] >= 0.9 * limit,
        "limit_at_configured_latency_qps": configured,
        "fraction_of_limit_at_configured_latency": qps["agent", c] / configured,
        "finite_run_limit_qps": finite, "fraction_of_finite_run_limit": qps["agent", c] / finite,
        "agent_cpu_s_per_query": agent_cpu, "limit_with_agent_cpu_qps": with_cpu,
        "fraction_of_limit_with_agent_cpu": qps["agent", c] / with_cpu,
        **{f"agent_{key}": med("agent", key) for key in ("llm_s_per_query", "other_s_per_query", "query_s",
                                                          "mean_batch_size", "worker_busy_fraction")},
        "direct_mean_batch_size": med("direct", "mean_batch_size"),
        **same_run_limit(runs, c),
    }


def same_run_limit(runs: list[dict[str, Any]], c: int) -> dict[str, Any]:
    """The limit from each agent run's own figures: its LLM seconds per call and the SAM 3 worker's busy
    seconds per query during that run (so the load of a shared machine at that moment is in both the
    limit and the throughput); medians over the repeats."""
    agent = [r for r in runs if (r["planner"], r["concurrency"]) == ("agent", c)]
    fractions = [r["queries_per_s"] / concurrency_limit(c, r["mean_llm_calls"], r["llm_s_per_call"],
                                                        r["worker_busy_s_per_query"]) for r in agent]
    return {"same_run_worker_busy_s_per_query": statistics.median(r["worker_busy_s_per_query"] for r in agent),
            "same_run_fraction_of_limit": statistics.median(fractions), "same_run_fractions": fractions}


async def other_ramp_run(engine: Sam3Engine, data: Path, work: Path, repeat: int,
                         args: argparse.Namespace) -> dict[str, Any]:
    """The agent at ``--concurrency`` with the other start-ramp setting (``--compare-ramp``)."""
    other = argparse.Namespace(**{**vars(args), "ramp": not args.ramp})
    out = work / f"agent-c{args.concurrency}-{repeat}-{'ramp' if other.ramp else 'no-ramp'}"
    return {"repeat": repeat, **await one_run(engine, data, out, "agent", args.concurrency, other),
            "planner": "agent-other-ramp"}


async def bench(engine: Sam3Engine, data: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Warm-up, then the agent and the direct planner at both concurrencies."""
    warm = argparse.Namespace(**{**vars(args), "samples": min(4, args.samples)})
    await one_run(engine, data, work / "warmup", "agent", 4, warm)
    runs = []
    for repeat in range(args.repeats):
        for planner in ("agent", "direct"):
            for concurrency in (1, args.concurrency):
                out = work / f"{planner}-c{concurrency}-{repeat}"
                other_first = planner == "agent" and concurrency > 1 and args.compare_ramp and repeat % 2 == 1
                if other_first:  # the ramp comparison, right beside its run and in alternating order
                    runs.append(await other_ramp_run(engine, data, work, repeat, args))
                runs.append({"repeat": repeat, **await one_run(engine, data, out, planner, concurrency, args)})
                if planner == "agent" and concurrency > 1 and args.compare_ramp and not other_first:
                    runs.append(await other_ramp_run(engine, data, work, repeat, args))
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
        **limits(runs, qps, args),
    }
    if args.compare_ramp:
        other = qps["agent-other-ramp", args.concurrency]
        ramped, at_once = (qps["agent", args.concurrency], other) if args.ramp else (other,
                                                                                     qps["agent", args.concurrency])
        summary.update({"agent_qps_ramp": ramped, "agent_qps_at_once": at_once, "ramp_gain": ramped / at_once})
    return {"summary": summary, "runs": runs}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=128,
                        help="queries per run at --concurrency (default: 128; see the module doc)")
    parser.add_argument("--c1-samples", type=int, default=32,
                        help="queries per run at concurrency 1 (default: 32; at most --samples)")
    parser.add_argument("--latency-ms", type=float, default=300.0, help="fixed latency of every LLM call")
    parser.add_argument("--concurrency", type=int, default=16, help="the concurrency compared with 1")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration (median taken)")
    parser.add_argument("--score-threshold", type=float, default=0.2, help="the tiny model scores about 0.25")
    parser.add_argument("--checkpoint", help="a SAM 3 checkpoint folder (default: a fresh tiny random one)")
    parser.add_argument("--device", default="cpu", help="where SAM 3 runs (default: cpu)")
    parser.add_argument("--max-batch", type=int, default=EngineOptions.max_batch,
                        help="most requests per engine micro-batch (EngineOptions.max_batch)")
    parser.add_argument("--sam-threads", type=int, default=1,
                        help="torch threads of the SAM 3 worker (EngineOptions.threads; 0: torch's default, one "
                             "per core); 1 by default: see the module doc")
    parser.add_argument("--ramp", action="store_true",
                        help="start the agent's first queries spread out (RunOptions.ramp=True)")
    parser.add_argument("--compare-ramp", action="store_true",
                        help="each repeat also runs the agent at --concurrency with the other ramp setting")
    parser.add_argument("--out", default="bench/results/eval.json")
    args = parser.parse_args(argv)
    if min(args.samples, args.c1_samples, args.repeats, args.max_batch) < 1 or args.concurrency < 2:
        parser.error("--samples, --c1-samples, --repeats and --max-batch must be >= 1, --concurrency >= 2")
    if args.sam_threads < 0:
        parser.error("--sam-threads must be >= 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark with command-line ``argv``; writes and returns the report."""
    args = parse_args(argv)
    load_at_start = list(os.getloadavg())
    logger.info("load average at the start: %s", " ".join(f"{v:.2f}" for v in load_at_start))
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        data = write_reasonseg(work / "reasonseg", copies=math.ceil(args.samples / 4))
        checkpoint = args.checkpoint or str(write_tiny_checkpoint(work / "tiny", seed=0))
        options = EngineOptions(max_batch=args.max_batch, threads=args.sam_threads or None)
        with Sam3Engine.from_pretrained(checkpoint, device=args.device, with_tracker=False, options=options) as engine:
            report = asyncio.run(bench(engine, data, work, args))
    report.update({"machine": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                   "device": args.device, "max_batch": args.max_batch, "sam_threads": args.sam_threads,
                   "load_average": list(os.getloadavg()), "load_average_at_start": load_at_start})
    write_report(report, args.out)
    s = report["summary"]
    logger.info("agent (median of %d): %.2f queries/s at concurrency %d vs %.2f at 1 = %.1fx (bar >= %.0fx: %s)",
                args.repeats,
                s[f"agent_qps_c{args.concurrency}"], args.concurrency, s["agent_qps_c1"], s["agent_speedup"], BAR,
                "met" if s["bar_met"] else "MISSED")
    logger.info("limit at concurrency %d (LLM %.0f ms per call x %.1f calls, SAM 3 batched %.1f ms per query): "
                "%.2f queries/s = %.1fx concurrency 1; reached %.0f%% of it (goal >= 90%%: %s); at the configured "
                "%.0f ms latency the limit is %.2f queries/s (reached %.0f%%)", args.concurrency,
                s["limit_llm_s_per_call"] * 1e3, s["limit_llm_calls_per_query"], s["limit_sam_s_per_query"] * 1e3,
                s["limit_qps"], s["limit_speedup"], 100 * s["fraction_of_limit"],
                "met" if s["within_10pct_of_limit"] else "MISSED", args.latency_ms,
                s["limit_at_configured_latency_qps"], 100 * s["fraction_of_limit_at_configured_latency"])
    logger.info("limit from each agent run's own LLM time and SAM 3 worker busy time (%.1f ms per query): reached "
                "%.0f%% of it (median; per run %s)", s["same_run_worker_busy_s_per_query"] * 1e3,
                100 * s["same_run_fraction_of_limit"], ", ".join(f"{100 * f:.0f}%" for f in s["same_run_fractions"]))
    logger.info("the same limit for a run of only %d queries (the SAM 3 work, then the last answer's LLM call): "
                "%.2f queries/s, reached %.0f%%", args.samples, s["finite_run_limit_qps"],
                100 * s["fraction_of_finite_run_limit"])
    logger.info("limit counting the agent's own CPU too (%.1f ms per query beyond the direct planner's, on each "
                "query's path; all CPU on %d cores): %.2f queries/s, reached %.0f%%", s["agent_cpu_s_per_query"] * 1e3,
                report["cpus"], s["limit_with_agent_cpu_qps"], 100 * s["fraction_of_limit_with_agent_cpu"])
    logger.info("agent at concurrency %d, per query: %.0f ms in all = %.0f ms waiting for the LLM + %.0f ms for SAM 3 "
                "(queue and batch) + %.0f ms the rest (agent work, CPU and GIL waits); SAM 3 worker busy %.0f%% of "
                "the run, %.1f requests per batch (direct planner: %.1f)", args.concurrency,
                1e3 * s["agent_query_s"], 1e3 * s["agent_llm_s_per_query"], 1e3 * s["agent_sam_s_per_query"],
                1e3 * s["agent_other_s_per_query"], 100 * s["agent_worker_busy_fraction"],
                s["agent_mean_batch_size"], s["direct_mean_batch_size"])
    if args.compare_ramp:
        logger.info("start ramp (median of %d, alternating): %.2f queries/s with it, %.2f with all first queries "
                    "at once = %.2fx", args.repeats, s["agent_qps_ramp"], s["agent_qps_at_once"], s["ramp_gain"])
    logger.info("load average at the end: %s", " ".join(f"{v:.2f}" for v in report["load_average"]))
    logger.info("direct (SAM 3 alone, no LLM): %.2f queries/s at concurrency %d, %.2f at 1",
                s[f"direct_qps_c{args.concurrency}"], args.concurrency, s["direct_qps_c1"])
    logger.info("written %s", args.out)
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
    logger.setLevel(logging.INFO)
    main()
