"""How long reading one hostile model reply takes: text-protocol parsing, JSON repair, the reply bound.

    PYTHONPATH=$PWD python -m bench.reply_parsing                  # every payload
    PYTHONPATH=$PWD python -m bench.reply_parsing commas_400k      # one payload

For each payload it prints the reply's size and the seconds of

* ``parse``: :func:`agent.tool_protocol.parse_text_reply` on the whole reply (no size bound), and
* ``bounded``: :func:`agent.reply_limits.read_choice` as the LLM client runs it (with the default
  ``LLMConfig.max_reply_bytes``: a reply over it is refused unparsed), when that module exists,
* ``chat``: one :meth:`agent.llm.LLMClient.chat` over HTTP from a scripted server sending the reply,
  and ``stall``: the longest time the event loop was blocked meanwhile (what every other client of a
  server would wait),

timed in the calling thread. Run it on an older checkout to compare (only ``parse``).
Numbers are for the machine it runs on; compare payloads within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import time
from collections.abc import Callable
from types import SimpleNamespace

from agent import tool_protocol as tp
from agent.llm_config import LLMConfig

logger = logging.getLogger("bench.reply_parsing")

SELECT = '"name": "select_masks_and_return", "arguments": {"mask_ids": ['


def _payloads() -> dict[str, Callable[[], str]]:
    """Name -> a function building the reply's content (built lazily: some are megabytes)."""
    return {
        "ids_2m": lambda: "<tool_call>{" + SELECT + ", ".join(["1"] * 2_000_000) + "]}}</tool_call>",
        "reply_8mb": lambda: "<tool_call>{" + SELECT + "1, " * (8 * 1024 * 1024 // 3) + "1]}}</tool_call>",
        "commas_400k": lambda: "<tool_call>{'name': 'select_masks_and_return', 'arguments': {'mask_ids': ["
                               + "1," * 400_000 + "]}}</tool_call>",
        "commas_64k_bytes": lambda: "<tool_call>{'name': 'select_masks_and_return', 'arguments': {'mask_ids': ["
                                    + "1," * 32_000 + "]}}</tool_call>",
        "fences_64k_bytes": lambda: "```{" * 16_000,
        "think_64k_bytes": lambda: "<think>" * 9_000,
        "tags_64k_bytes": lambda: "<tool_call>{" * 5_000,
        "braces_64k_bytes": lambda: "<tool_call>" + "{" * 64_000,
        "spaces_64k_bytes": lambda: '<tool_call>```{"name": "x",' + " " * 64_000 + "x```</tool_call>",
    }


@functools.cache
def _specs() -> list[tp.ToolSpec]:
    from tools.segmentation import ALL_TOOLS

    return [t.spec for t in ALL_TOOLS]


def _parse(content: str) -> str:
    try:
        parsed = tp.parse_text_reply(content, _specs())
    except Exception as exc:  # a retry message for the model is a result too
        return f"{type(exc).__name__}"
    return "call" if parsed.call is not None else "no call"


def _bounded(content: str) -> str:
    try:
        from agent import reply_limits
        from agent.llm import _build_reply
    except ImportError:
        return "n/a"
    message = SimpleNamespace(content=content, tool_calls=None)
    completion = SimpleNamespace(choices=[SimpleNamespace(message=message, finish_reason="stop")])
    reply = reply_limits.read_choice(completion, LLMConfig(), _specs(), _build_reply)
    return "retry" if reply.tool_error is not None else "call" if reply.tool_call else "no call"


def _loop_stall(content: str) -> tuple[float, float, str]:
    """``(seconds, longest event-loop stall, outcome)`` of one :meth:`LLMClient.chat` over HTTP that gets
    ``content`` from a scripted server, while a ticker coroutine measures how long the loop was blocked."""
    from agent.llm import LLMClient
    from agent.testing import Reply, ScriptedLLM

    async def measure(base_url: str, model: str) -> tuple[float, float, str]:
        stall, done = 0.0, False

        async def ticker() -> None:
            nonlocal stall
            while not done:
                before = time.perf_counter()
                await asyncio.sleep(0.005)
                stall = max(stall, time.perf_counter() - before - 0.005)

        config = LLMConfig(base_url=base_url, model=model, api_key="bench", max_retries=0, timeout_s=300)
        task = asyncio.create_task(ticker())
        started = time.perf_counter()
        async with LLMClient(config) as client:
            try:
                reply = await client.chat([{"role": "user", "content": "go"}], _specs())
                outcome = "retry" if reply.tool_error is not None else "call" if reply.tool_call else "no call"
            except Exception as exc:  # the bounded client refuses an oversized body
                outcome = getattr(exc, "cause", type(exc).__name__)
        seconds, done = time.perf_counter() - started, True
        await task
        return seconds, stall, outcome

    with ScriptedLLM([Reply.text(content)]) as server:
        return asyncio.run(measure(server.base_url, server.model))


def _timed(func: Callable[[str], str], content: str) -> tuple[float, str]:
    started = time.perf_counter()
    outcome = func(content)
    return time.perf_counter() - started, outcome


def main() -> None:
    payloads = _payloads()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"payloads (default: all): {', '.join(payloads)}")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in payloads]
    if unknown:
        parser.error(f"unknown payload(s) {unknown}; choose from {', '.join(payloads)}")
    logging.basicConfig(level=logging.ERROR)
    _specs(), _bounded("")  # imports outside the timings
    print(f"{'payload':<18} {'bytes':>10} {'parse_s':>9} {'outcome':<12} {'bounded_s':>9} {'outcome':<8} "
          f"{'chat_s':>8} {'stall_s':>8} outcome")
    for name in args.names or payloads:
        content = payloads[name]()
        parse_s, parsed = _timed(_parse, content)
        bounded_s, bounded = _timed(_bounded, content)
        chat_s, stall_s, chatted = _loop_stall(content)
        size = len(content.encode())
        print(f"{name:<18} {size:>10} {parse_s:>9.3f} {parsed:<12} {bounded_s:>9.4f} {bounded:<8} {chat_s:>8.3f} "
              f"{stall_s:>8.3f} {chatted}", flush=True)


if __name__ == "__main__":
    main()
