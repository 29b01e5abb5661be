"""``sam3-agent finetune`` (train SAM 3 on a COCO-format dataset) and ``make-synthetic-data``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def _finetune(args: argparse.Namespace) -> int:
    from finetune.demo import resolve_model_id
    from finetune.specs import write_detector_checkpoint
    from finetune.trainer import FinetuneConfig, finetune

    base = args.model
    if base == "random":  # train from scratch: a random detector of the demo's shape
        base = str(write_detector_checkpoint(Path(args.out) / "base", seed=args.seed))
    config = FinetuneConfig(
        train_json=args.train, output_dir=args.out, base_model=resolve_model_id(base), val_json=args.val,
        image_root=args.image_root, val_fraction=args.val_fraction, mode=args.mode, lora_rank=args.lora_rank,
        learning_rate=args.lr, batch_size=args.batch_size, grad_accum=args.grad_accum, max_steps=args.max_steps,
        warmup_steps=args.warmup_steps, save_every=args.save_every, eval_every=args.eval_every,
        max_eval_images=args.max_eval_images, log_every=args.log_every, one_to_many=args.o2m,
        hard_negatives=args.hard_negatives, exemplar_prob=args.exemplar_prob, seed=args.seed, device=args.device,
        bf16=args.bf16, resume=args.resume, threads=args.threads)
    report = finetune(config)
    summary = {k: report[k] for k in ("before", "after", "global_step", "seconds", "model", "export")}
    print(json.dumps(summary, indent=2))
    return 0


def _make_synthetic(args: argparse.Namespace) -> int:
    from finetune.synthetic import SyntheticSpec, write_synthetic_dataset

    path = write_synthetic_dataset(args.dir, args.images, seed=args.seed, spec=SyntheticSpec(image_size=args.size))
    logger.info("COCO annotations written to %s", path)
    return 0


def add_finetune_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``finetune`` and ``make-synthetic-data`` on the ``sam3-agent`` command parser."""
    ft = subparsers.add_parser("finetune", help="fine-tune SAM 3 on a COCO-format instance dataset")
    ft.add_argument("train", help="COCO instances JSON; category names are the text prompts")
    ft.add_argument("--out", required=True, help="run folder: checkpoint-N/, model/, report.json")
    ft.add_argument("--model", default="demo",
                    help="starting checkpoint: hub id, folder, 'demo' (shipped) or 'random' (train from scratch)")
    ft.add_argument("--val", help="held-out COCO JSON (default: hold out --val-fraction of the training images)")
    ft.add_argument("--val-fraction", type=float, default=0.1)
    ft.add_argument("--image-root", help="folder file_name is relative to (default: the JSON's folder)")
    ft.add_argument("--mode", choices=["full", "lora", "frozen"], default="full",
                    help="full: every weight; lora: LoRA adapters (peft), merged at export; "
                         "frozen: vision and text encoders fixed")
    ft.add_argument("--lora-rank", type=int, default=8)
    ft.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (cosine schedule)")
    ft.add_argument("--batch-size", type=int, default=4, help="images per step (each with several phrases)")
    ft.add_argument("--grad-accum", type=int, default=1, help="steps accumulated per optimizer update")
    ft.add_argument("--max-steps", type=int, default=200)
    ft.add_argument("--warmup-steps", type=int, default=20)
    ft.add_argument("--save-every", type=int, default=50, help="checkpoint interval in steps (for --resume)")
    ft.add_argument("--eval-every", type=int, default=0, help="held-out AP/cgF1 interval (0: before and after)")
    ft.add_argument("--max-eval-images", type=int, default=64)
    ft.add_argument("--log-every", type=int, default=10)
    ft.add_argument("--o2m", action=argparse.BooleanOptionalAction, default=False,
                    help="SAM 3's one-to-many branch (the queries again without self-attention, several positives "
                         "per object, weight 2); off by default: it lowered held-out AP in short fine-tunes here")
    ft.add_argument("--hard-negatives", type=int, default=2, help="absent categories asked per image")
    ft.add_argument("--exemplar-prob", type=float, default=0.0,
                    help="chance a positive phrase also gets one of its boxes as an exemplar prompt")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--device", help="cuda, cpu (default: cuda if available)")
    ft.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                    help="bfloat16 autocast (default: on with a CUDA GPU that supports it)")
    ft.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a busy shared machine)")
    ft.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    ft.set_defaults(func=_finetune)

    syn = subparsers.add_parser("make-synthetic-data", help="write a synthetic COCO dataset of coloured shapes")
    syn.add_argument("dir", help="output folder (images/ and annotations.json)")
    syn.add_argument("--images", type=int, default=200)
    syn.add_argument("--size", type=int, default=112, help="image side in pixels")
    syn.add_argument("--seed", type=int, default=0)
    syn.set_defaults(func=_make_synthetic)
