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
