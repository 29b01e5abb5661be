"""The ``sam3-agent`` command line.

Commands:
  segment IMAGE... QUERY --out DIR             the agent: an MLLM uses SAM 3 to answer the query
  segment-phrase IMAGE... -p PHRASE...         raw SAM 3: every instance of each phrase (JSON, COCO)
  track VIDEO PHRASE...                        raw SAM 3 on a video: every instance of each phrase, tracked
  segment-video VIDEO QUERY --out DIR          the agent on a video: an MLLM picks SAM 3 masklets
  make-tiny-checkpoint DIR                     a random tiny SAM 3 for trying every command offline
  eval {reasonseg,refcoco,omnilabel,score}     benchmark runs (resumable) and their scores
  serve / mcp / chat                           HTTP API, MCP server, chat page

First run with no download, on the shipped demo model (synthetic shapes only):
`sam3-agent make-synthetic-data syn --images 3 && sam3-agent segment-phrase syn/images/00000.png
-p "yellow triangle" --model demo --overlay`; on your own images with random weights:
`sam3-agent make-tiny-checkpoint tiny && sam3-agent segment-phrase photo.jpg -p dog --model tiny
--threshold 0`. The real model (`facebook/sam3`) is gated on the Hugging Face hub: request access,
then `hf auth login` or set HF_TOKEN.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence

from sam3_core.errors import Sam3AgentError

logger = logging.getLogger("sam3_agent.cli")

#: Our own loggers: their summaries ("written to ...") are shown at the default verbosity.
OWN_LOGGERS = ("sam3_agent",)


def build_parser() -> argparse.ArgumentParser:
    """The full parser; it imports no torch, transformers or web framework (``--help`` stays fast)."""
    from cli.checkpoints import add_make_tiny_checkpoint
    from cli.eval import add_eval_commands
    from cli.finetune import add_finetune_command
    from cli.finetune_tracker import add_finetune_tracker_commands
    from cli.image import add_segment_phrase
    from cli.llm import add_llm_commands
    from cli.segment import add_segment
    from cli.serve import add_serving_commands
    from cli.video import add_segment_video, add_track

    parser = argparse.ArgumentParser(prog="sam3-agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="-v: INFO logs and library warnings; -vv: DEBUG")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_segment(commands)
    add_segment_phrase(commands)
    add_track(commands)
    add_segment_video(commands)
    add_make_tiny_checkpoint(commands)
    add_llm_commands(commands)
    add_eval_commands(commands)
    add_serving_commands(commands)
    add_finetune_command(commands)
    add_finetune_tracker_commands(commands)
    return parser


_QUIET_LOGGERS = {"transformers": logging.ERROR, "torch": logging.ERROR, "huggingface_hub": logging.WARNING,
                  "httpx": logging.WARNING, "agent": logging.WARNING, "tools": logging.WARNING,
                  "sam3_core": logging.WARNING}


@contextlib.contextmanager
def cli_logging(verbosity: int) -> Iterator[None]:
    """Our summaries at INFO in a plain format on stderr; everything else WARNING (INFO with -v, DEBUG -vv).

    Library warnings (``warnings`` module, transformers' advisory logs) are hidden unless -v is given.
    Levels, handlers and warning filters are restored on exit, so ``main()`` can run in-process (tests).
    """
    root = logging.getLogger()
    touched = [root, *(logging.getLogger(n) for n in (*OWN_LOGGERS, *_QUIET_LOGGERS))]
    saved = [lg.level for lg in touched]
    handler = None
    if not root.handlers:  # under pytest (or a program embedding main) keep the handlers already there
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s" if verbosity == 0 else
                                               "%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
    with warnings.catch_warnings():
        if verbosity == 0:
            for name, level in _QUIET_LOGGERS.items():
                logging.getLogger(name).setLevel(level)
            warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for lg, level in zip(touched, saved):
                lg.setLevel(level)
            if handler is not None:
                root.removeHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sam3-agent`` console script; returns the exit status.

    0: done; 1: some images of a batch failed (see the summary); 2: bad input or a failure (logged);
    3: the agent ended without an answer (budget used up, or failed).
    """
    args = build_parser().parse_args(argv)
    if args.verbose == 0:  # read by transformers when it is first imported
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    with cli_logging(args.verbose):
        try:
            return args.func(args)
        except Sam3AgentError as exc:
            logger.error("error: %s", exc)
            return 2
        except KeyboardInterrupt:
            logger.error("interrupted")
            return 130


if __name__ == "__main__":
    sys.exit(main())
