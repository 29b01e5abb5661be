"""Defaults shared by the engine, the agent and every front end, stated once.

This module imports nothing heavy (no torch), so the command line can show these values in ``--help``
without loading a deep-learning stack.
"""

from __future__ import annotations

from pathlib import Path

#: The released SAM 3 checkpoint on the Hugging Face hub (gated: accept its licence, then log in).
DEFAULT_MODEL_ID = "facebook/sam3"

#: Instances whose score (object x presence) is above this are kept.
SCORE_THRESHOLD = 0.5

#: A mask pixel is foreground when its probability is above this.
MASK_THRESHOLD = 0.5

#: Seconds the one hub probe made before loading a hub checkpoint may take (see ``sam3_core.loading``).
HUB_PROBE_TIMEOUT_S = 5.0

#: ``--model demo``: the small SAM 3 shipped in the package (``sam3_video`` layout: detector + tracker), trained
#: on synthetic shapes (``finetune/``, ``finetune/tracker/``); offline it segments "red circle", "blue square",
#: ... in images, refines from clicks and boxes, and tracks those shapes through clips. Nothing else.
DEMO_MODEL = "demo"
DEMO_MODEL_DIR = Path(__file__).resolve().parent / "demo_model"


def resolve_model_id(model_id: str) -> str:
    """``"demo"`` -> the shipped demo checkpoint's folder; any other id or path unchanged.

    Raises:
        FileNotFoundError: ``"demo"`` was asked but the package was installed without the demo model.
    """
    if model_id != DEMO_MODEL:
        return model_id
    if not (DEMO_MODEL_DIR / "config.json").is_file():
        raise FileNotFoundError(f"the demo model is missing from {DEMO_MODEL_DIR}; reinstall the package")
    return str(DEMO_MODEL_DIR)
