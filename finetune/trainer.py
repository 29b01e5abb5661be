"""Fine-tuning SAM 3 with transformers' ``Trainer``: the loss from :mod:`finetune.criterion`, held-out
AP and cgF1 while training, resumable checkpoints, and an exported model ``Sam3Engine`` loads.

Output folder layout::

    OUT/checkpoint-N/   Trainer checkpoints (weights, optimizer, scheduler, RNG): what --resume continues
    OUT/model/          the fine-tuned model + processor (Hugging Face layout, LoRA merged): a detector, or for a
                        sam3_video start the whole video model with the tracker carried over
    OUT/report.json     settings, held-out metrics before and after, loss history, time
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from .data import ImageRecord, all_phrases, load_coco
from .evaluate import evaluate
from .export import export_detector
from .model import Sam3ForTraining, base_sam3
from .pairs import PairCollator, PairDataset, PairOptions

logger = logging.getLogger(__name__)

MODES = ("full", "lora", "frozen")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2"]


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything a run needs. ``val_json`` absent: the last ``val_fraction`` of the images are held out."""

    train_json: str
    output_dir: str
    base_model: str
    val_json: str | None = None
    image_root: str | None = None
    val_fraction: float = 0.1
    mode: str = "full"  # full | lora | frozen (vision and text encoders frozen)
    lora_rank: int = 8
    learning_rate: float = 1e-4
    weight_decay: float = 0.05
    batch_size: int = 4  # images per step; each brings its positive and negative phrases
    grad_accum: int = 1
    max_steps: int = 200
    warmup_steps: int = 20
    save_every: int = 50
    eval_every: int = 0  # 0: only before and after
    max_eval_images: int = 64
    log_every: int = 10
    one_to_many: bool = False  # SAM 3's o2m branch; measured to lower AP in short fine-tunes (finetune.dac)
    hard_negatives: int = 2
    exemplar_prob: float = 0.0
    seed: int = 0
    device: str | None = None
    bf16: bool | None = None  # None: on when CUDA supports it
    resume: bool = False
    threads: int | None = None  # CPU threads for torch; 1 is fastest on a busy shared machine


def _load_model(config: FinetuneConfig):
    from transformers import Sam3Model, Sam3Processor

    processor = Sam3Processor.from_pretrained(config.base_model)
    # float32 master weights whatever the checkpoint stores (the demo ships float16); AMP handles bf16 on GPU.
    model = Sam3Model.from_pretrained(config.base_model, dtype=torch.float32)
    if config.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {config.mode!r}")
    if config.mode == "frozen":
        for module in (model.vision_encoder, model.text_encoder):
            module.requires_grad_(False)
    elif config.mode == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank,
                                                 target_modules=LORA_TARGETS, lora_dropout=0.0))
    return model, processor


def split_records(config: FinetuneConfig) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Training and held-out records (a separate file, or the tail of the training file)."""
    train = load_coco(config.train_json, config.image_root)
    if config.val_json:
        return train, load_coco(config.val_json, config.image_root)
    n_val = max(1, round(len(train) * config.val_fraction))
    if n_val >= len(train):
        raise ValueError(f"{config.train_json}: too few images ({len(train)}) to hold some out; pass a val file")
    return train[:-n_val], train[-n_val:]


class _LossTrainer(Trainer):
    """``Trainer`` whose logs also carry the averaged loss terms since the last log."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._parts: dict[str, float] = {}
        self._count = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        for key, value in outputs["parts"].items():
            self._parts[key] = self._parts.get(key, 0.0) + value
        self._count += 1
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs and self._count:
            for key in ("loss_ce", "loss_bbox", "loss_giou", "presence", "loss_mask", "loss_dice",
                        "semantic_seg", "semantic_dice"):
                if key in self._parts:
                    logs[key] = round(self._parts[key] / self._count, 4)
            o2m = sum(value for key, value in self._parts.items() if "_o2m" in key)
            if o2m:
                logs["o2m"] = round(o2m / self._count, 4)  # the whole one-to-many branch, weighted
            self._parts, self._count = {}, 0
        super().log(logs, *args, **kwargs)


class _Progress(TrainerCallback):
    """New augmentations each epoch, periodic held-out metrics, and the loss history for the report."""

    def __init__(self, dataset: PairDataset, eval_fn, eval_every: int) -> None:
        self.dataset, self.eval_fn, self.eval_every = dataset, eval_fn, eval_every
        self.history: list[dict] = []

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.epoch = round(state.epoch or 0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.history.append({"step": state.global_step, **logs})
            logger.info("step %d/%d %s", state.global_step, state.max_steps,
                        " ".join(f"{k}={v:.4g}" for k, v in logs.items() if isinstance(v, float)))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.eval_every and state.global_step % self.eval_every == 0 and state.global_step < state.max_steps:
            metrics = self.eval_fn(model)
            self.history.append({"step": state.global_step, **{f"eval_{k}": v for k, v in metrics.items()}})
            logger.info("step %d held-out %s", state.global_step, _fmt(metrics))


def _fmt(metrics: dict) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in metrics.items())


def _training_args(config: FinetuneConfig, device: torch.device) -> TrainingArguments:
    bf16 = config.bf16 if config.bf16 is not None else (device.type == "cuda" and torch.cuda.is_bf16_supported())
    return TrainingArguments(
        output_dir=config.output_dir, per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.learning_rate,
        weight_decay=config.weight_decay, max_steps=config.max_steps, warmup_steps=config.warmup_steps,
        lr_scheduler_type="cosine", max_grad_norm=0.1, logging_steps=config.log_every,
        save_steps=config.save_every, save_total_limit=2, bf16=bf16, use_cpu=device.type == "cpu",
        remove_unused_columns=False, report_to=[], seed=config.seed, disable_tqdm=True,
        dataloader_num_workers=0, save_only_model=False)


def finetune(config: FinetuneConfig) -> dict:
    """Train, evaluate before and after on the held-out split, export ``OUT/model``; returns the report."""
    started = time.time()
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    train_records, val_records = split_records(config)
    phrases = sorted(set(all_phrases(train_records)) | set(all_phrases(val_records)))
    val_records = val_records[: config.max_eval_images]
    model, processor = _load_model(config)
    options = PairOptions(hard_negatives=config.hard_negatives, exemplar_prob=config.exemplar_prob)
    dataset = PairDataset(train_records, processor.image_processor, options, seed=config.seed, vocabulary=phrases)
    wrapper = Sam3ForTraining(model, one_to_many=config.one_to_many)

    def eval_fn(m) -> dict:
        return evaluate(m.sam3 if isinstance(m, Sam3ForTraining) else m, processor, val_records, phrases,
                        device=device)

    wrapper.to(device)
    before = eval_fn(wrapper)
    logger.info("held-out before: %s", _fmt(before))
    progress = _Progress(dataset, eval_fn, config.eval_every)
    trainer = _LossTrainer(model=wrapper, args=_training_args(config, device), train_dataset=dataset,
                           data_collator=PairCollator(processor.tokenizer), callbacks=[progress])
    last = get_last_checkpoint(config.output_dir) if config.resume and Path(config.output_dir).is_dir() else None
    if config.resume and last is None:
        logger.warning("--resume: no checkpoint in %s, starting from the base model", config.output_dir)
    if last:
        logger.info("resuming from %s", last)
    trainer.train(resume_from_checkpoint=last)
    after = eval_fn(wrapper)
    logger.info("held-out after: %s", _fmt(after))
    export_dir = Path(config.output_dir) / "model"
    exported = export_model(wrapper, processor, export_dir, config.base_model)
    report = {"config": asdict(config), "phrases": phrases, "train_images": len(train_records),
              "heldout_images": len(val_records), "before": before, "after": after,
              "resumed_from": last, "global_step": trainer.state.global_step,
              "seconds": round(time.time() - started, 1),
              "history": progress.history, "model": str(export_dir), "export": exported}
    (Path(config.output_dir) / "report.json").write_text(json.dumps(report, indent=2, default=_jsonable))
    return report


def _jsonable(value):
    return None if isinstance(value, float) and math.isnan(value) else str(value)


def export_model(wrapper: Sam3ForTraining, processor, folder: Path, base_model: str) -> dict:
    """Save the trained detector (LoRA merged, float32) in ``base_model``'s layout; see :mod:`finetune.export`."""
    model = wrapper.sam3
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model = base_sam3(model).to("cpu", torch.float32).eval()
    return export_detector(model, processor, folder, base_model)
