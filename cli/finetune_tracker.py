"""``sam3-agent finetune-tracker`` (train the tracker of a sam3_video checkpoint on synthetic clips) and
``make-synthetic-clip`` (a clip of moving shapes with its ground truth, for ``track``)."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys

logger = logging.getLogger(__name__)


def _finetune_tracker(args: argparse.Namespace) -> int:
    from finetune.demo import resolve_model_id
    from finetune.tracker.model import TrackerShape
    from finetune.tracker.run import run
    from finetune.tracker.train import TrackerTrainConfig
    from sam3_core.defaults import DEMO_MODEL_DIR

    config = TrackerTrainConfig(
        detector=resolve_model_id(args.detector), output_dir=args.out, shape=TrackerShape(),
        init_from=resolve_model_id(args.init) if args.init else None,
        train_images=args.images, train_clips=args.clips, clip_frames=args.frames, steps=args.steps,
        clips_per_step=args.clips_per_step, objects_per_clip=args.objects_per_clip,
        max_seconds=args.max_minutes * 60 if args.max_minutes else None, learning_rate=args.lr,
        warmup_steps=args.warmup_steps, image_batch=args.batch_size, seed=args.seed, threads=args.threads,
        log_every=args.log_every)
    command = "sam3-agent " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    log = run(config, eval_images=args.eval_images, eval_clips=args.eval_clips,
              install_to=DEMO_MODEL_DIR if args.install_demo else None, command=command)
    print(json.dumps({k: log[k] for k in ("random_tracker", "trained_tracker", "steps_done", "seconds")}, indent=2))
    return 0


def _make_clip(args: argparse.Namespace) -> int:
    import numpy as np

    from finetune.synthetic import SyntheticSpec
    from finetune.tracker.clips import ClipSpec, draw_clip, write_clip

    clip = draw_clip(np.random.default_rng(args.seed),
                     ClipSpec(image=SyntheticSpec(image_size=args.size), num_frames=args.frames))
    write_clip(args.dir, clip)
    print(json.dumps({"folder": args.dir, "frames": args.frames, "objects": clip.names}))
    return 0


def add_finetune_tracker_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``finetune-tracker`` and ``make-synthetic-clip``."""
    ft = subparsers.add_parser("finetune-tracker",
                               help="train a small SAM 3 tracker around a trained detector on synthetic shapes")
    ft.add_argument("--out", required=True, help="run folder: model/, random/, report.json")
    ft.add_argument("--detector", default="demo", help="checkpoint whose detector is kept (default: demo)")
    ft.add_argument("--init", help="start the tracker from this sam3_video checkpoint's (default: random)")
    ft.add_argument("--images", type=int, default=1500, help="synthetic training images (box/click prompts)")
    ft.add_argument("--clips", type=int, default=400, help="synthetic training clips (unrolled tracking)")
    ft.add_argument("--frames", type=int, default=5, help="frames per training clip")
    ft.add_argument("--clips-per-step", type=int, default=1)
    ft.add_argument("--objects-per-clip", type=int, default=2, help="objects tracked per training clip")
    ft.add_argument("--steps", type=int, default=4000)
    ft.add_argument("--max-minutes", type=float, help="stop training after this many minutes")
    ft.add_argument("--lr", type=float, default=1e-3)
    ft.add_argument("--warmup-steps", type=int, default=100)
    ft.add_argument("--batch-size", type=int, default=8, help="images per step (plus one clip)")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ft.add_argument("--log-every", type=int, default=50)
    ft.add_argument("--eval-images", type=int, default=50, help="held-out images for the refine IoU")
    ft.add_argument("--eval-clips", type=int, default=12, help="held-out 8-frame clips for tracking J")
    ft.add_argument("--install-demo", action="store_true",
                    help="copy the result into the package as the --model demo checkpoint")
    ft.set_defaults(func=_finetune_tracker)

    clip = subparsers.add_parser("make-synthetic-clip",
                                 help="write a clip of moving coloured shapes (PNG frames + ground truth)")
    clip.add_argument("dir", help="output folder: 00000.png ... and annotations.json")
    clip.add_argument("--frames", type=int, default=12)
    clip.add_argument("--size", type=int, default=112, help="frame side in pixels")
    clip.add_argument("--seed", type=int, default=0)
    clip.set_defaults(func=_make_clip)
