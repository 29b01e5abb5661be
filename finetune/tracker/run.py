"""One tracker run end to end: train, save, measure against the untrained tracker, optionally install as the
shipped demo model (the detector's own training record is kept, the tracker's is added beside it)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from .train import TrackerTrainConfig, save_video_checkpoint, train_tracker

logger = logging.getLogger(__name__)


def measure(checkpoint: str | Path, eval_images: int, eval_clips: int) -> dict[str, float]:
    """Held-out refine IoU (box, click) and tracking J (box-started, phrase-driven) of a checkpoint on CPU."""
    from sam3_core import Sam3Engine
    from sam3_core.video.engine import VideoEngine

    from .evaluate import held_out_clips, refine_iou, track_j

    with Sam3Engine.from_pretrained(str(checkpoint), device="cpu") as engine:
        figures = {"refine_box_iou": refine_iou(engine, eval_images, prompt="box"),
                   "refine_click_iou": refine_iou(engine, eval_images, prompt="click")}
    clips = held_out_clips(eval_clips)
    with VideoEngine.from_pretrained(str(checkpoint), device="cpu") as video:
        figures["track_J_box_start"] = track_j(video, clips, "box")
        figures["track_J_phrase"] = track_j(video, clips, "phrase")
    return {k: round(v, 4) for k, v in figures.items()}


def run(config: TrackerTrainConfig, *, eval_images: int = 50, eval_clips: int = 12,
        install_to: str | Path | None = None, command: str | None = None) -> dict:
    """Train into ``config.output_dir``/model, measure it and the untrained tracker (``/random``), write
    ``report.json`` there and, with ``install_to``, copy the model and a ``training.json`` into that folder."""
    from .model import video_model_from_detector

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    random_dir = save_video_checkpoint(video_model_from_detector(config.detector, config.shape, seed=config.seed),
                                       config.detector, out / "random")
    model, log = train_tracker(config)
    model_dir = save_video_checkpoint(model, config.detector, out / "model")
    log["heldout"] = {"images": eval_images, "clips": eval_clips, "clip_frames": 8,
                      "image_seed": 777, "clip_seed": 888}
    log["random_tracker"] = measure(random_dir, eval_images, eval_clips)
    log["trained_tracker"] = measure(model_dir, eval_images, eval_clips)
    if command:
        log["command"] = command
    (out / "report.json").write_text(json.dumps(log, indent=2))
    logger.info("random tracker %s", log["random_tracker"])
    logger.info("trained tracker %s", log["trained_tracker"])
    if install_to is not None:
        install(model_dir, log, install_to)
    return log


def install(model_dir: str | Path, log: dict, dest: str | Path) -> Path:
    """Replace the checkpoint files in ``dest`` by ``model_dir``'s, keeping ``dest/training.json``'s detector
    record and setting its ``"tracker"`` section to ``log`` (minus the per-step history)."""
    dest = Path(dest)
    record_path = dest / "training.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    for item in Path(model_dir).iterdir():
        shutil.copy2(item, dest / item.name)
    record["tracker"] = {k: v for k, v in log.items() if k != "history"}
    record["tracker"]["loss_every_500_steps"] = [h for h in log.get("history", []) if h["step"] % 500 == 0]
    record_path.write_text(json.dumps(record, indent=2))
    return dest
