"""Progress on long command-line work: a tqdm bar on a terminal, plain log lines otherwise.

A bar's carriage returns make a log file or CI output unreadable, so when stderr is not a terminal
the same progress is written as an occasional ``desc: i/total`` line through logging.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

logger = logging.getLogger("sam3_agent.cli")

#: Seconds between two plain progress lines (the last item is always reported).
LINE_EVERY_S = 10.0


def progress(items: Iterable[T], *, total: int | None, desc: str, unit: str = "it",
             enabled: bool = True) -> Iterator[T]:
    """Yield ``items`` while showing progress on stderr (nothing when ``enabled`` is False)."""
    if not enabled:
        yield from items
        return
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(items, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr) as bar:
            yield from bar
        return
    last = time.monotonic()
    count = 0
    for count, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= LINE_EVERY_S:
            last = now
            logger.info("%s: %d%s %s", desc, count, f"/{total}" if total else "", unit)
    if count:
        logger.info("%s: %d%s %s done", desc, count, f"/{total}" if total else "", unit)
