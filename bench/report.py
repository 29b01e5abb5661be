"""Writing a benchmark's JSON report (every script's last step)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def write_report(report: dict, out: str | Path) -> Path:
    """Write ``report`` as indented JSON to ``out`` (parent folders made as needed) and log where it went."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    logger.info("report written to %s", path)
    return path
