"""One evaluation run per run folder at a time: an exclusive lock on ``<run_dir>/run.lock``.

Two runs writing one folder would both answer every missing sample (the work done twice, the
predictions log appended by both). :func:`locked_run_dir` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on
the lock file for as long as the run lasts and writes the holder's pid into it; a second run on the
folder fails at once with :class:`RunDirLocked` naming that pid. The lock belongs to the open file, so
the operating system releases it when the holder exits, however it ends (a killed run leaves no stale
lock; the file stays, harmless). ``flock`` locks are advisory and local: a folder on a network file
system shared by two machines is not protected.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import inspect
import os
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sam3_core.errors import UsageError

LOCK_FILE = "run.lock"

T = TypeVar("T")


class RunDirLocked(UsageError):
    """Another evaluation run holds the run folder."""


def _holder(path: Path) -> str:
    """What the lock file says about its holder (pid and start time), for the error message."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()[:200]
    except OSError:
        text = ""
    return text or "pid unknown"


@contextlib.contextmanager
def hold_run_lock(run_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the exclusive lock of ``run_dir`` (created when missing) for the ``with`` block; yields the lock
    file. Raises :class:`RunDirLocked` at once when another run holds it."""
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirLocked(
                f"{folder} is in use by another evaluation run ({_holder(path)}); wait for it to end, or use "
                "another --out folder"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        yield path
    finally:
        os.close(fd)  # releases the lock


def locked_run_dir(func: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., Coroutine[Any, Any, T]]:
    """Decorate an ``async`` run function whose ``run_dir`` argument names the run folder: the function runs
    holding that folder's lock (:func:`hold_run_lock`)."""
    signature = inspect.signature(func)

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        run_dir = signature.bind(*args, **kwargs).arguments["run_dir"]
        with hold_run_lock(run_dir):
            return await func(*args, **kwargs)

    return wrapper
