"""Defaults shared by the engine, the agent and every front end, stated once.

This module imports nothing heavy (no torch), so the command line can show these values in ``--help``
without loading a deep-learning stack.
"""

from __future__ import annotations

#: The released SAM 3 checkpoint on the Hugging Face hub (gated: accept its licence, then log in).
DEFAULT_MODEL_ID = "facebook/sam3"

#: Instances whose score (object x presence) is above this are kept.
SCORE_THRESHOLD = 0.5

#: A mask pixel is foreground when its probability is above this.
MASK_THRESHOLD = 0.5

#: Seconds the one hub probe made before loading a hub checkpoint may take (see ``sam3_core.loading``).
HUB_PROBE_TIMEOUT_S = 5.0
