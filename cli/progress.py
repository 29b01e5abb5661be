"""Progress on long command-line work: a tqdm bar on a terminal, plain log lines otherwise.

A bar's carriage returns make a log file or CI output unreadable, so when stderr is not a terminal
the same progress is written as an occasional ``desc: i/total`` line through logging.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

logger = logging.getLogger("sam3_agent.cli")

#: Seconds between two plain progress lines (the last item is always reported).
LINE_EVERY_S = 10.0


def progress(items: Iterable[T], *, total: int | None, desc: str, unit: str = "it", enabled: bool = True,
             postfix: Callable[[T], str] | None = None) -> Iterator[T]:
    """Yield ``items`` while showing progress on stderr (nothing when ``enabled`` is False): count, rate and,
    with ``postfix``, a few words about the latest item (e.g. the objects on the latest frame)."""
    if not enabled:
        yield from items
        return
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(items, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr) as bar:
            for item in bar:
                if postfix is not None:
                    bar.set_postfix_str(postfix(item), refresh=False)
                yield item
        return
    start = last = time.monotonic()
    count, words = 0, ""
    for count, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= LINE_EVERY_S:
            last = now
            words = postfix(item) if postfix is not None else ""
            logger.info("%s", _line(desc, count, total, unit, now - start, words))
        elif postfix is not None:
            words = postfix(item)
    if count:
        logger.info("%s done", _line(desc, count, total, unit, time.monotonic() - start, words))


def _line(desc: str, count: int, total: int | None, unit: str, elapsed: float, words: str) -> str:
    rate = f", {count / elapsed:.2f} {unit}/s" if elapsed > 0 else ""
    return f"{desc}: {count}{f'/{total}' if total else ''} {unit}{rate}{f', {words}' if words else ''}"
