"""How long reading one hostile model reply takes: text-protocol parsing, JSON repair, the reply bound.

    PYTHONPATH=$PWD python -m bench.reply_parsing                  # every payload
    PYTHONPATH=$PWD python -m bench.reply_parsing commas_400k      # one payload

For each payload it prints the reply's size and the seconds of

* ``parse``: :func:`agent.tool_protocol.parse_text_reply` on the whole reply (no size bound), and
* ``bounded``: :func:`agent.reply_limits.read_choice` as the LLM client runs it (with the default
  ``LLMConfig.max_reply_bytes``: a reply over it is refused unparsed), when that module exists,

timed in the calling thread. Run it on an older checkout to compare (only ``parse``).
Numbers are for the machine it runs on; compare payloads within one run.
"""

from __future__ import annotations

import argparse
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
    print(f"{'payload':<18} {'bytes':>10} {'parse_s':>9} {'outcome':<16} {'bounded_s':>9} outcome")
    for name in args.names or payloads:
        content = payloads[name]()
        parse_s, parsed = _timed(_parse, content)
        bounded_s, bounded = _timed(_bounded, content)
        size = len(content.encode())
        print(f"{name:<18} {size:>10} {parse_s:>9.3f} {parsed:<16} {bounded_s:>9.4f} {bounded}", flush=True)


if __name__ == "__main__":
    main()
