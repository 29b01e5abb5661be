"""Where the shipped demo model lives, and the ``--model demo`` name that points at it.

The weights sit in ``sam3_core/demo_model/`` (package data beside the engine, so loading it needs
nothing from this package). :func:`resolve_model_id` is the whole resolver; the engine's loader can
apply the same rule without importing ``finetune``.
"""

from __future__ import annotations

from pathlib import Path

DEMO_NAME = "demo"
DEMO_MODEL_DIR = Path(__file__).resolve().parent.parent / "sam3_core" / "demo_model"


def resolve_model_id(model_id: str) -> str:
    """``"demo"`` -> the shipped demo checkpoint's folder; anything else unchanged.

    Raises:
        FileNotFoundError: ``"demo"`` was asked but the demo model is not installed.
    """
    if model_id != DEMO_NAME:
        return model_id
    if not (DEMO_MODEL_DIR / "config.json").is_file():
        raise FileNotFoundError(f"the demo model is missing from {DEMO_MODEL_DIR}; reinstall the package")
    return str(DEMO_MODEL_DIR)


def package_demo(model_dir: str | Path, report: dict, dest: str | Path = DEMO_MODEL_DIR,
                 commands: list[str] | None = None) -> Path:
    """Copy a trained detector into ``dest`` with float16 weights (half the size; the engine casts them
    back to its own dtype on load) and a ``training.json`` holding the run's command-line settings and
    held-out metrics (``commands``: how the data and the model were made, for the record)."""
    import json

    import torch
    from transformers import Sam3Model, Sam3Processor

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model = Sam3Model.from_pretrained(model_dir, dtype=torch.float32)
    model.to(torch.float16).save_pretrained(dest)
    Sam3Processor.from_pretrained(model_dir).save_pretrained(dest)
    keep = {k: report[k] for k in ("config", "phrases", "train_images", "heldout_images", "before", "after",
                                   "global_step", "seconds") if k in report}
    if commands:
        keep["commands"] = commands
    (dest / "training.json").write_text(json.dumps(keep, indent=2))
    return dest
