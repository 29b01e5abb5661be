"""LLM commands and options of the command line.

``make-tiny-llm DIR --family qwen2_5_vl|qwen3_vl`` writes a tiny randomly initialised vision-language
model (offline) that loads like a real checkpoint: ``--llm hf:DIR`` runs the agent on it.
:func:`add_llm_options` and :func:`llm_config` are the shared ``--llm`` option group (a URL, several URLs
for a pool, ``hf:<model>`` or ``vllm:<model>``) for commands that talk to the LLM.
"""

from __future__ import annotations

import argparse
import logging

from agent.backends.tiny_llm import FAMILIES

logger = logging.getLogger("sam3_agent.cli")


def _make_tiny_llm(args: argparse.Namespace) -> int:
    from agent.backends.tiny_llm import write_tiny_llm

    folder = write_tiny_llm(args.dir, args.family, seed=args.seed)
    logger.info("random tiny %s written to %s; use it with --llm hf:%s", args.family, folder, folder)
    return 0


def add_llm_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``make-tiny-llm``."""
    tiny = commands.add_parser("make-tiny-llm", help="write a tiny random Qwen2.5-VL or Qwen3-VL (no download)")
    tiny.add_argument("dir", help="output folder")
    tiny.add_argument("--family", choices=FAMILIES, default="qwen2_5_vl", help="model family (default qwen2_5_vl)")
    tiny.add_argument("--seed", type=int, default=0, help="weight initialisation seed")
    tiny.set_defaults(func=_make_tiny_llm)


def add_llm_options(command: argparse.ArgumentParser, *, default: str = "http://localhost:8000/v1") -> None:
    """The ``--llm`` option group (see :mod:`agent.backends.spec` for the syntax)."""
    group = command.add_argument_group("LLM")
    group.add_argument("--llm", action="append", metavar="SPEC",
                       help=f"OpenAI-compatible URL (repeat for a pool; URL#N caps requests in flight), "
                            f"hf:<model id or folder> (in-process transformers) or vllm:<model> (default {default})")
    group.add_argument("--llm-model", default="", help="served model name (default: the endpoint's first model)")
    group.add_argument("--no-constrain", action="store_true",
                       help="do not constrain tool calls with a grammar (lenient parsing and retries only)")
    group.add_argument("--vllm-memory", type=float, default=0.45,
                       help="share of GPU memory an in-process vLLM may take (the rest stays for SAM 3)")
    command.set_defaults(llm_default=default)


def llm_config(args: argparse.Namespace, **overrides):  # -> agent.llm.LLMConfig
    """An :class:`~agent.llm.LLMConfig` from the ``--llm`` option group (``overrides`` win)."""
    from agent.backends.spec import parse_specs
    from agent.llm import LLMConfig

    values = args.llm or [args.llm_default]
    parse_specs(values)  # a clear error before anything is loaded
    fields = {"base_url": values[0], "pool": tuple(values[1:]), "model": args.llm_model,
              "constrained": "off" if args.no_constrain else "auto", "vllm_gpu_memory_fraction": args.vllm_memory}
    return LLMConfig(**{**fields, **overrides})
