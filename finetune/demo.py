"""Where the shipped demo model lives, and the ``--model demo`` name that points at it.

The weights sit in ``sam3_core/demo_model/`` (package data beside the engine, so loading it needs
nothing from this package). :func:`sam3_core.defaults.resolve_model_id` is the resolver (the engine's
loaders apply it; re-exported here).
"""

from __future__ import annotations

import json
from pathlib import Path

from sam3_core.defaults import DEMO_MODEL, DEMO_MODEL_DIR, resolve_model_id
from sam3_core.errors import UsageError

__all__ = ["DEMO_MODEL", "DEMO_MODEL_DIR", "package_demo", "resolve_model_id"]


def package_demo(model_dir: str | Path, report: dict, dest: str | Path = DEMO_MODEL_DIR,
                 commands: list[str] | None = None) -> Path:
    """Copy a trained detector into ``dest`` with float16 weights (half the size; the engine casts them
    back to its own dtype on load) and a ``training.json`` holding the run's command-line settings and
    held-out metrics (``commands``: how the data and the model were made, for the record)."""
    import torch
    from transformers import Sam3Model, Sam3Processor

    dest = Path(dest)
    config = dest / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("model_type") == "sam3_video":
        # The shipped demo is detector + trained tracker; writing a detector over it would drop the tracker.
        raise UsageError(f"{dest} holds a detector + tracker model; package the new detector into another "
                         "folder, then train a tracker for it with `sam3-agent finetune-tracker --detector FOLDER "
                         "--install-demo`")
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
