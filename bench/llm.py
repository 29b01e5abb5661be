"""LLM side of the agent: valid tool calls with and without constraints, grammar libraries, in-process vs HTTP.

With tiny random-weight Qwen2.5-VL, Qwen3-VL and Llama 4 checkpoints (``sam3-agent make-tiny-llm``) on the CPU,
each reply answers the agent's real first turn (system prompt with the text-protocol tool description,
the query and an image; mask ids 1-3 exist), sampled at temperature 1 so the replies differ:

* **valid-call rate**: replies that parse as one valid tool call (known tool, arguments fitting its
  schema, ids among those that exist), with constraints on and off; **tokens per valid call**: all
  generated tokens divided by the valid calls (off: usually no valid call at all);
* **grammar libraries** (xgrammar, llguidance): tokenizer set-up, grammar compile time (every step with a
  new set of mask ids compiles a new grammar) and masking time per token (fill the allowed-token mask
  and advance), replaying valid replies through both with the tiny vocabulary and with a ~64k one;
* **in-process overhead per step vs HTTP**: the same model answers the same request (a) in process
  (``--llm hf:DIR``) and (b) behind an OpenAI-compatible HTTP server (the scripted server, whose handler
  runs the same model). Overhead = the client's latency minus the model's own generate time.

    python -m bench.llm                     # 50 replies per family and mode
    python -m bench.llm --replies 100 --only replies --out /tmp/llm.json
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent import tool_protocol as tp
from agent.backends.constrain import GrammarCompiler
from agent.backends.grammar import LIBRARIES, CallGrammar, call_schema
from agent.backends.hf_local import HFBackend
from agent.backends.tiny_llm import FAMILIES, build_tokenizer, write_tiny_llm
from agent.llm import LLMClient, LLMConfig
from agent.testing import Reply, ScriptedLLM
from bench.report import write_report
from prompts import render_prompt
from tools.registry import specs
from tools.segmentation import ALL_TOOLS

logger = logging.getLogger("bench.llm")
SPECS = specs(ALL_TOOLS)
CHOICES = tp.CallChoices(values={"mask_ids": (1, 2, 3)})


def first_turn(llm: LLMClient) -> list[dict[str, Any]]:
    """The agent's first request: system prompt, query and a 640x480 image."""
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    system = render_prompt("system", tool_instructions="You have at most 12 replies and 8 different phrases.")
    query = render_prompt("user_query", query="the cup on the left")
    return [{"role": "system", "content": system},
            {"role": "user", "content": [{"type": "text", "text": query}, llm.image_part(image)]}]


async def replies(config: LLMConfig, n: int) -> dict[str, Any]:
    """``n`` replies to the first turn: valid calls, tokens, seconds, grammar time per token."""
    async with LLMClient(config) as llm:
        messages = first_turn(llm)
        await llm.chat(messages, SPECS, choices=CHOICES, max_tokens=4)  # load the model and compile, unmeasured
        valid = tokens = 0
        started = time.perf_counter()
        for _ in range(n):
            reply = await llm.chat(messages, SPECS, choices=CHOICES)
            tokens += reply.usage.completion_tokens
            valid += reply.tool_call is not None and reply.tool_error is None
        seconds = time.perf_counter() - started
    return {"replies": n, "valid": valid, "valid_rate": valid / n, "tokens": tokens,
            "tokens_per_valid_call": tokens / valid if valid else None, "s_per_reply": seconds / n}


def _replay_texts() -> list[str]:
    """Three valid constrained replies (prose, then a call), replayed token by token through matchers."""
    call = '<tool_call>{{"name": "{}", "arguments": {}}}</tool_call>'
    return [
        "The cup is on the left of the table, so I will segment it first. " + call.format(
            "segment_phrase", '{"text_prompt": "white cup"}'),
        "Masks 1 and 3 cover the cup; mask 2 is the saucer. " + call.format(
            "select_masks_and_return", '{"mask_ids": [1, 3]}'),
        "Nothing in this image matches the query. " + call.format("report_no_mask", "{}"),
    ]


def grammar_costs(tokenizer: Any, library: str) -> dict[str, float]:
    """Tokenizer set-up, grammar compile and per-token masking cost of one library (warm, steady state)."""
    started = time.perf_counter()
    compiler = GrammarCompiler(tokenizer, len(tokenizer), library)
    setup_s = time.perf_counter() - started
    sequences = [[*tokenizer.encode(t), tokenizer.convert_tokens_to_ids("<|im_end|>")] for t in _replay_texts()]
    compile_s, fill_s, tokens = [], 0.0, 0
    for ids in range(6):  # a new set of mask ids each step means a new grammar to compile
        grammar = CallGrammar(call_schema(SPECS, tp.CallChoices(values={"mask_ids": tuple(range(1, ids + 4))})), 600)
        started = time.perf_counter()
        compiler.matcher(grammar)
        compile_s.append(time.perf_counter() - started)
    bitmask = compiler.allocate(1)
    for repeat in range(3):  # the first pass warms lazy caches (and imports); the other two are measured
        for sequence in sequences:
            matcher = compiler.matcher(grammar)
            started = time.perf_counter()
            for token in sequence:
                matcher.fill(bitmask, 0)
                if not matcher.accept(token):
                    raise RuntimeError(f"{library} rejected a valid reply")
            if repeat:
                fill_s += time.perf_counter() - started
                tokens += len(sequence)
    return {"vocab": len(tokenizer), "setup_ms": setup_s * 1e3, "compile_ms_first": compile_s[0] * 1e3,
            "compile_ms_median": statistics.median(compile_s[1:]) * 1e3, "mask_us_per_token": fill_s / tokens * 1e6}


def large_tokenizer() -> Any:
    """A byte-level BPE of about 64k tokens (a real model's order of size) learned from installed sources."""
    import transformers

    files = sorted(Path(transformers.__file__).parent.rglob("*.py"))[:1500]
    corpus = [f.read_text(encoding="utf-8", errors="ignore") for f in files]
    return build_tokenizer("qwen3_vl", 65536, corpus)


async def overhead(folder: str, n: int) -> dict[str, float]:
    """Client latency minus the model's generate time, in process and over HTTP (same model, request)."""
    config = LLMConfig(base_url=f"hf:{folder}", max_tokens=16, constrained="off")
    backend = HFBackend(folder, config)
    backend.load()
    generate_s: list[float] = []

    def respond(body: dict[str, Any]) -> Reply:
        started = time.perf_counter()
        completion = backend.generate([{"messages": body["messages"], "max_tokens": body["max_tokens"]}])[0]
        generate_s.append(time.perf_counter() - started)
        usage = completion.usage
        return Reply.text(completion.choices[0].message.content, prompt_tokens=usage.prompt_tokens,
                          completion_tokens=usage.completion_tokens)

    result = {}
    with ScriptedLLM(responder=respond) as server:
        for name, cfg in (("http", LLMConfig(base_url=server.base_url, model=server.model, max_tokens=16,
                                             constrained="off")), ("in_process", config)):
            async with LLMClient(cfg) as llm:
                if name == "in_process":
                    llm._backend = backend  # the very same loaded model
                messages = first_turn(llm)
                original = backend.generate
                timed: list[float] = []

                def timed_generate(requests, original=original, timed=timed):
                    started = time.perf_counter()
                    out = original(requests)
                    timed.append(time.perf_counter() - started)
                    return out

                backend.generate = timed_generate if name == "in_process" else original
                latencies = []
                for _ in range(n + 1):
                    reply = await llm.chat(messages, SPECS)
                    latencies.append(reply.latency_s)
                backend.generate = original
            model = (generate_s if name == "http" else timed)[1:]
            result[f"{name}_overhead_ms"] = statistics.median(np.subtract(latencies[1:], model)) * 1e3
            result[f"{name}_latency_ms"] = statistics.median(latencies[1:]) * 1e3
    await backend.aclose()
    return result


def valid_calls(folders: dict[str, str], n: int) -> dict[str, Any]:
    """Valid-call rate and tokens per valid call, per family, constraints on and off."""
    out = {}
    for family, folder in folders.items():
        for mode in ("on", "off"):
            config = LLMConfig(base_url=f"hf:{folder}", temperature=1.0, max_tokens=300, max_prose_tokens=120,
                               constrained="auto" if mode == "on" else "off")
            out[f"{family}_constrained_{mode}"] = stats = asyncio.run(replies(config, n))
            logger.info("%s constraints %-3s: %d/%d valid calls (%.0f%%), %s tokens per valid call, %.2f s/reply",
                        family, mode, stats["valid"], stats["replies"], 100 * stats["valid_rate"],
                        f"{stats['tokens_per_valid_call']:.1f}" if stats["valid"] else "-", stats["s_per_reply"])
    return out


def library_comparison() -> dict[str, Any]:
    """:func:`grammar_costs` of both libraries with the tiny vocabulary and a ~64k one."""
    out = {}
    for name, tokenizer in (("tiny", build_tokenizer("qwen3_vl")), ("large", large_tokenizer())):
        for library in LIBRARIES:
            out[f"grammar_{library}_{name}_vocab"] = costs = grammar_costs(tokenizer, library)
            logger.info("%s, %d-token vocabulary: set-up %.0f ms, compile %.1f ms (first %.1f), masking %.1f us "
                        "per token", library, costs["vocab"], costs["setup_ms"], costs["compile_ms_median"],
                        costs["compile_ms_first"], costs["mask_us_per_token"])
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark with command-line ``argv``; writes and returns the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=50, help="replies per family and mode (>= 50 for the issue)")
    parser.add_argument("--only", choices=["replies", "grammar", "overhead"], help="run one part only")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny models: 1 is fastest)")
    parser.add_argument("--out", default="bench/results/llm.json")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"machine": platform.platform(), "replies": args.replies, "threads": args.threads}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folders = {family: str(write_tiny_llm(Path(tmp) / family, family)) for family in FAMILIES}
            if args.only in (None, "replies"):
                report.update(valid_calls(folders, args.replies))
            if args.only in (None, "grammar"):
                report.update(library_comparison())
            if args.only in (None, "overhead"):
                report["overhead"] = o = asyncio.run(overhead(folders["qwen2_5_vl"], max(10, args.replies // 5)))
                logger.info("overhead per step (latency minus generate): in process %.1f ms, HTTP %.1f ms "
                            "(latency %.1f vs %.1f ms)", o["in_process_overhead_ms"], o["http_overhead_ms"],
                            o["in_process_latency_ms"], o["http_latency_ms"])
    finally:
        torch.set_num_threads(threads)
    write_report(report, args.out)
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
    logger.setLevel(logging.INFO)
    logging.getLogger("agent.llm").setLevel(logging.ERROR)  # random replies are often cut at max_tokens
    main()
