"""``make-tiny-checkpoint``: a random SAM 3 in the Hugging Face format, written with no download.

The checkpoint has the released model's layout (detector, tracker and video processor), so every
command runs on it: ``segment``, ``segment-phrase``, ``track``, ``segment-video`` and refinement.
Its weights are random: it shows that the tools work, not what SAM 3 finds.
"""

from __future__ import annotations

import argparse
import logging

from cli import inputs

logger = logging.getLogger("sam3_agent.cli")


def add_make_tiny_checkpoint(commands: argparse._SubParsersAction) -> None:
    tiny = commands.add_parser("make-tiny-checkpoint", help="write a random small SAM 3 (no download)",
                               description=__doc__)
    tiny.add_argument("dir", help="output folder")
    tiny.add_argument("--size", choices=["tiny", "mid"], default="tiny",
                      help="tiny: ~19 MB, for trying the tools and tests; mid: CPU benchmarks (default: %(default)s)")
    tiny.add_argument("--image-only", action="store_true",
                      help="leave out the video processor files (then track and segment-video cannot use it)")
    tiny.add_argument("--video", action="store_true", help=argparse.SUPPRESS)  # the old opt-in; now the default
    tiny.add_argument("--seed", type=int, default=0, help="weights from torch.manual_seed(SEED) (default: 0)")
    tiny.set_defaults(func=run_make_tiny_checkpoint)


def run_make_tiny_checkpoint(args: argparse.Namespace) -> int:
    inputs.check_writable_folder(args.dir)
    from sam3_core.tiny import MID_SPEC, TinySpec, write_tiny_checkpoint

    spec = MID_SPEC if args.size == "mid" else TinySpec()
    folder = write_tiny_checkpoint(args.dir, spec, video=not args.image_only, seed=args.seed)
    logger.info("random %s SAM 3 checkpoint written to %s; try it with --model %s --threshold 0", args.size,
                folder, folder)
    return 0
