"""LLM commands of the command line.

``make-tiny-llm DIR --family qwen2_5_vl|qwen3_vl|llama4`` writes a tiny randomly initialised vision-language
model (offline) that loads like a real checkpoint: ``--llm hf:DIR`` runs the agent on it. The ``--llm``
option group itself is :func:`cli.options.add_llm_options`.
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
    tiny = commands.add_parser("make-tiny-llm",
                               help="write a tiny random Qwen2.5-VL, Qwen3-VL or Llama 4 (no download)")
    tiny.add_argument("dir", help="output folder")
    tiny.add_argument("--family", choices=FAMILIES, default="qwen2_5_vl", help="model family (default qwen2_5_vl)")
    tiny.add_argument("--seed", type=int, default=0, help="weight initialisation seed")
    tiny.set_defaults(func=_make_tiny_llm)
