"""The ``sam3-agent`` command line.

Sub-commands:
  segment-phrase IMAGE PHRASE [PHRASE ...]   raw SAM 3: every instance of each phrase, as JSON
  make-tiny-checkpoint DIR [--video]          a random tiny SAM 3 in the Hugging Face format
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from sam3_core.errors import Sam3AgentError

logger = logging.getLogger("sam3_agent.cli")


def _segment_phrase(args: argparse.Namespace) -> int:
    from sam3_core.engine import EngineOptions, Sam3Engine

    options = EngineOptions(max_pixels=args.max_pixels)
    with Sam3Engine.from_pretrained(args.model, device=args.device, dtype=args.dtype, options=options,
                                    with_tracker=False) as engine:
        image = engine.load(args.image)
        results = engine.segment(image, args.phrases, exemplar_boxes=args.box or None,
                                 score_threshold=args.threshold, mask_threshold=args.mask_threshold)
    document = {
        "image": str(args.image),
        "image_size": {"height": image.height, "width": image.width},
        "model": str(args.model),
        "score_threshold": args.threshold,
        "results": [result.to_json() for result in results],
    }
    _write_json(document, args.out)
    if args.overlay:
        _write_overlay(image.pixels, results, args.overlay)
    found = ", ".join(f"{r.phrase}: {len(r)}" for r in results)
    logger.info("instances found (%s); JSON written to %s", found, args.out)
    return 0


def _write_json(document: dict, out: str) -> None:
    text = json.dumps(document, indent=1)
    if out == "-":
        sys.stdout.write(text + "\n")
        return
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)


def _write_overlay(pixels, results, path: str) -> None:
    import numpy as np

    from agent.overlays import render_masks

    masks = [m for r in results for m in r.masks]
    stack = np.stack(masks) if masks else np.zeros((0, *pixels.shape[:2]), dtype=bool)
    render_masks(pixels, stack, list(range(1, len(masks) + 1))).save(path)


def _make_tiny_checkpoint(args: argparse.Namespace) -> int:
    from sam3_core.tiny import MID_SPEC, TinySpec, write_tiny_checkpoint

    spec = MID_SPEC if args.size == "mid" else TinySpec()
    folder = write_tiny_checkpoint(args.dir, spec, video=args.video, seed=args.seed)
    logger.info("random %s SAM 3 checkpoint written to %s", args.size, folder)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sam3-agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    seg = commands.add_parser("segment-phrase", help="raw SAM 3 on an image for one or more noun phrases")
    seg.add_argument("image", help="image file")
    seg.add_argument("phrases", nargs="*", help="short noun phrases, e.g. 'red car'")
    seg.add_argument("--model", default="facebook/sam3", help="hub id or local checkpoint folder")
    seg.add_argument("--out", default="-", help="JSON output path ('-' for stdout)")
    seg.add_argument("--overlay", help="also write a PNG with the numbered masks")
    seg.add_argument("--box", type=float, nargs=4, action="append", metavar=("X1", "Y1", "X2", "Y2"),
                     help="a positive exemplar box in pixels (repeatable); alone it prompts by example")
    seg.add_argument("--threshold", type=float, default=0.5, help="instance score threshold")
    seg.add_argument("--mask-threshold", type=float, default=0.5, help="mask probability threshold")
    seg.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda if available)")
    seg.add_argument("--dtype", help="bf16, fp16 or fp32 (default: bf16 on GPU, fp32 on CPU)")
    seg.add_argument("--max-pixels", type=int, default=64_000_000, help="refuse larger images")
    seg.set_defaults(func=_segment_phrase)

    tiny = commands.add_parser("make-tiny-checkpoint", help="write a random small SAM 3 (no download)")
    tiny.add_argument("dir", help="output folder")
    tiny.add_argument("--video", action="store_true", help="also write the video processor files")
    tiny.add_argument("--size", choices=["tiny", "mid"], default="tiny", help="tiny: tests; mid: CPU benchmarks")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_make_tiny_checkpoint)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sam3-agent`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except Sam3AgentError as exc:
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
