"""Soak test: normal ``/v1/segment`` traffic, first alone and then mixed with the abuses of issue 11.

The server runs as its own process on 127.0.0.1 (tiny random checkpoint, a scripted LLM in this
process), so its memory is measured alone. Three phases of ``--seconds`` each (the last one shorter):

1. ``baseline``: normal callers only (``--callers`` threads, each sending small images one after the other);
2. ``abuse``: the same callers while abusers run: random methods and paths (metric labels), slowloris
   sockets trickling headers, slow bodies, oversized bodies, image URLs at loopback / metadata
   addresses, cross-site posts, large chat uploads (retention), agent queries abandoned after 1 s;
3. ``recovery``: normal callers alone again, after a pause long enough for the header and body deadlines
   (``--rounds N`` repeats abuse and recovery, to tell memory that plateaus from memory that leaks).

It reports normal-request p50/p99 and error counts per phase, what the abusers got back, and the
server's RSS before the abuse, at its end and after recovery. Every loop stops at its phase's end and
all traffic goes to 127.0.0.1.

    python bench/soak.py                       # 30 s per phase
    python bench/soak.py --seconds 60 --out soak.json
"""

from __future__ import annotations

import argparse
import base64
import collections
import io
import json
import logging
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from bench.serve import wait_ready

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("bench.soak")
HEADER_TIMEOUT_S, BODY_TIMEOUT_S = 5.0, 5.0


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------- server


def serve(config: dict[str, Any]) -> None:
    """The server process: the app with the limits under test (called with ``--serve CONFIG_JSON``)."""
    from agent.llm import LLMConfig
    from agent.settings import AgentSettings
    from serving.config import ServeSettings
    from serving.http.app import create_app
    from serving.http.server import serve_forever

    llm = LLMConfig(base_url=config["llm_url"], model="scripted-model", api_key="x", timeout_s=10.0, max_retries=0,
                    tool_protocol="text")
    settings = ServeSettings(model=config["model"], device="cpu", allow_url_images=True, url_timeout_s=3.0, llm=llm,
                             agent=AgentSettings(score_threshold=0.2, max_steps=12), state_db=config["state_db"],
                             chat_page=False, retention_max_bytes=32 << 20, header_timeout_s=HEADER_TIMEOUT_S,
                             body_timeout_s=BODY_TIMEOUT_S, agent_timeout_s=30.0)
    serve_forever(create_app(settings), "127.0.0.1", config["port"], log_level="warning")


def start_server(config: dict[str, Any], log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", PYTHONPATH=str(ROOT))
    with log_path.open("w") as log:
        return subprocess.Popen([sys.executable, "-m", "bench.soak", "--serve", json.dumps(config)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


# ------------------------------------------------------------------------------------------- traffic


class Tally:
    """Outcomes by kind, shared by the threads of a phase."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.latencies: list[float] = []

    def add(self, kind: str, outcome: str, latency: float | None = None) -> None:
        with self.lock:
            self.counts[kind][outcome] += 1
            if latency is not None:
                self.latencies.append(latency)


def normal_caller(base_url: str, bodies: list[dict[str, Any]], stop: threading.Event, tally: Tally) -> None:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        index = 0
        while not stop.is_set():
            start = time.perf_counter()
            try:
                response = client.post("/v1/segment", json=bodies[index % len(bodies)])
                outcome = str(response.status_code)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            tally.add("normal", outcome, time.perf_counter() - start if outcome == "200" else None)
            index += 1


def _loop(stop: threading.Event, tally: Tally, kind: str, once: Callable[[], str], pause_s: float) -> None:
    while not stop.is_set():
        try:
            outcome = once()
        except (httpx.HTTPError, OSError) as exc:
            outcome = type(exc).__name__
        tally.add(kind, outcome)
        stop.wait(pause_s)


Job = tuple[str, Callable[[], str], float]


def abuse_jobs(base_url: str, port: int, big_png: bytes, small_png: bytes) -> list[Job]:
    """Each abuse as (kind, one attempt returning its outcome, pause between attempts)."""
    rng = random.Random(11)
    client = httpx.Client(base_url=base_url, timeout=30)
    urls = [f"http://127.0.0.1:{port}/openapi.json", f"http://0x7f000001:{port}/metrics",
            "http://169.254.169.254/latest/meta-data/", f"http://[::1]:{port}/", "http://10.0.0.1/a.png"]
    small_b64 = base64.b64encode(small_png).decode()

    def random_method() -> str:
        method = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(8))
        return str(client.request(method, f"/x{rng.randrange(10**9)}").status_code)

    def url_image() -> str:
        return str(client.post("/v1/segment", json={"image": {"url": rng.choice(urls)}, "phrases": ["a"]}).status_code)

    def cross_site() -> str:
        return str(client.post("/v1/chat", files={"image": ("a.png", small_png, "image/png")},
                               headers={"Origin": "http://evil.example"}).status_code)

    def chat_upload() -> str:
        return str(client.post("/v1/chat", files={"image": ("big.png", big_png, "image/png")}).status_code)

    def abandoned_agent() -> str:
        try:
            httpx.post(f"{base_url}/v1/agent", json={"image": {"base64": small_b64}, "query": "the cup"}, timeout=1.0)
        except httpx.TimeoutException:
            return "client_left"
        return "finished"

    def oversized() -> str:
        return raw(port, b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 999999999\r\n\r\n{")

    def slow_body() -> str:
        return raw(port, b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100000\r\n\r\n{\"phr", wait_s=BODY_TIMEOUT_S + 10)

    return [("random_method", random_method, 0.02), ("url_image", url_image, 0.1), ("cross_site", cross_site, 0.1),
            ("chat_upload", chat_upload, 1.0), ("abandoned_agent", abandoned_agent, 0.5),
            ("oversized_body", oversized, 0.1), ("slow_body", slow_body, 0.0)]


def abusers(base_url: str, port: int, stop: threading.Event, tally: Tally, big_png: bytes,
            small_png: bytes) -> list[threading.Thread]:
    """The abuse threads (started by the caller); each returns soon after ``stop`` is set."""
    threads = [threading.Thread(target=_loop, args=(stop, tally, kind, fn, pause), name=kind, daemon=True)
               for kind, fn, pause in abuse_jobs(base_url, port, big_png, small_png)]
    threads.append(threading.Thread(target=slowloris, args=(port, stop, tally), name="slowloris", daemon=True))
    return threads


def raw(port: int, request: bytes, wait_s: float = 10.0) -> str:
    """Send ``request`` on a fresh socket; the status code of the reply (or how it ended)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        sock.sendall(request)
        try:
            head = sock.recv(64)
        except TimeoutError:
            return "no_reply"
    return head.split(b" ")[1].decode() if head.startswith(b"HTTP/") else "closed"


def slowloris(port: int, stop: threading.Event, tally: Tally, sockets: int = 100) -> None:
    """Keep ``sockets`` connections trickling one header byte each every 0.5 s; count those the server drops."""
    open_: list[socket.socket] = []
    while not stop.is_set():
        while len(open_) < sockets:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            sock.setblocking(False)
            open_.append(sock)
        for sock in list(open_):
            try:
                sock.sendall(b"X")
                if sock.recv(16) == b"":
                    raise ConnectionResetError
            except BlockingIOError:
                continue
            except OSError:
                tally.add("slowloris", "dropped_by_server")
                open_.remove(sock)
                sock.close()
        stop.wait(0.5)
    for sock in open_:
        sock.close()


# -------------------------------------------------------------------------------------------- phases


def prime(base_url: str, port: int, big_png: bytes, small_png: bytes) -> None:
    """One call of each abuser's route before the baseline, so first-use costs (lazy imports of the agent
    and LLM client, SQLite's page cache) count in the memory before the abuse, not as its residue."""
    tally = Tally()
    for kind, once, _ in abuse_jobs(base_url, port, big_png, small_png):
        if kind != "slow_body":
            tally.add(kind, once())
    logger.info("primed: %s", {kind: dict(counter) for kind, counter in tally.counts.items()})


def run_phase(name: str, seconds: float, base_url: str, bodies: list[dict[str, Any]], callers: int,
              extra: Callable[[threading.Event, Tally], list[threading.Thread]] | None = None) -> dict[str, Any]:
    stop, tally = threading.Event(), Tally()
    threads = [threading.Thread(target=normal_caller, args=(base_url, bodies, stop, tally), daemon=True)
               for _ in range(callers)]
    threads += extra(stop, tally) if extra else []
    for thread in threads:
        thread.start()
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    ordered = sorted(tally.latencies)
    normal = tally.counts.pop("normal", collections.Counter())
    row = {"phase": name, "seconds": seconds, "normal_ok": normal.get("200", 0),
           "normal_errors": sum(v for k, v in normal.items() if k != "200"),
           "p50_ms": round(statistics.median(ordered) * 1000, 1) if ordered else None,
           "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 1) if ordered else None,
           "abuse": {kind: dict(counter) for kind, counter in tally.counts.items()}}
    logger.info("%-9s normal ok %5d errors %3d  p50 %7s ms  p99 %7s ms", name, row["normal_ok"],
                row["normal_errors"], row["p50_ms"], row["p99_ms"])
    return row


def soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from agent.testing import Reply, ScriptedLLM
    from sam3_core.tiny import write_tiny_checkpoint

    model = args.model or str(write_tiny_checkpoint(workdir / "tiny", seed=0))
    rng = np.random.default_rng(0)
    small = [png(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)) for _ in range(4)]
    bodies = [{"image": {"base64": base64.b64encode(p).decode()}, "phrases": ["cup", "dog"]} for p in small]
    big_png = png(rng.integers(0, 256, (800, 800, 3), dtype=np.uint8))  # ~1.9 MB that does not compress
    slow_call = Reply.text('<tool_call>{"name": "segment_phrase", "arguments": {"text_prompt": "cup"}}</tool_call>',
                           delay_s=0.3)
    with ScriptedLLM(responder=lambda body: slow_call) as llm:
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        config = {"model": model, "port": port, "llm_url": llm.base_url, "state_db": str(workdir / "state.sqlite")}
        process = start_server(config, workdir / "server.log")
        try:
            wait_ready(base_url, process)
            prime(base_url, port, big_png, small[0])
            run_phase("warmup", 3, base_url, bodies, args.callers)
            baseline = run_phase("baseline", args.seconds, base_url, bodies, args.callers)
            before = rss_mb(process.pid)
            rounds = []
            for _ in range(args.rounds):  # more than one round shows whether memory plateaus or keeps growing
                abuse = run_phase("abuse", args.seconds, base_url, bodies, args.callers,
                                  lambda stop, tally: abusers(base_url, port, stop, tally, big_png, small[0]))
                at_end = rss_mb(process.pid)
                time.sleep(max(HEADER_TIMEOUT_S, BODY_TIMEOUT_S) + 2)  # dropped connections, cancelled work settle
                recovery = run_phase("recovery", max(5.0, args.seconds / 3), base_url, bodies, args.callers)
                rounds.append((abuse, recovery, at_end, rss_mb(process.pid)))
            llm_calls = len(llm.requests)
        finally:
            process.terminate()
            process.wait(timeout=30)
    after = rounds[-1][3]
    ratio = max(r[0]["p99_ms"] or 0 for r in rounds) / baseline["p99_ms"] if baseline["p99_ms"] else None
    return {"machine": f"{os.cpu_count()} CPUs", "seconds_per_phase": args.seconds, "callers": args.callers,
            "phases": [baseline] + [phase for r in rounds for phase in r[:2]],
            "p99_ratio_abuse_vs_baseline": round(ratio, 2) if ratio else None,
            "rss_mb": {"before_abuse": round(before, 1),
                       "per_round": [{"end_of_abuse": round(r[2], 1), "after_recovery": round(r[3], 1)}
                                     for r in rounds]},
            "rss_change_vs_before": round(after / before - 1, 3), "llm_calls": llm_calls}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the baseline and abuse phases")
    parser.add_argument("--callers", type=int, default=2, help="normal callers (threads)")
    parser.add_argument("--rounds", type=int, default=1, help="abuse + recovery rounds after the baseline")
    parser.add_argument("--model", help="SAM 3 checkpoint (default: a tiny random one)")
    parser.add_argument("--out", help="also write the report here (JSON)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.serve:
        serve(json.loads(args.serve))
        return 0
    with tempfile.TemporaryDirectory(prefix="sam3-soak-") as tmp:
        report = soak(args, Path(tmp))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
