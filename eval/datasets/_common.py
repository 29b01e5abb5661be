"""Small helpers shared by the dataset loaders: reading files and checking fields with clear errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sam3_core.errors import InputError


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is an existing file, else raise :class:`InputError` naming it."""
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    return path


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is an existing directory, else raise :class:`InputError` naming it."""
    if not path.is_dir():
        raise InputError(f"{what} not found (expected a directory): {path}")
    return path


def read_json(path: Path, what: str, *, fallback_encoding: str | None = None) -> Any:
    """Parse a JSON file, raising :class:`InputError` that names the file when it is missing or invalid.

    ``fallback_encoding`` is tried when the bytes are not valid UTF-8 (LISA's ReasonSeg reader
    retries with ``cp1252`` for a few annotation files).
    """
    require_file(path, what)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if fallback_encoding is None:
            raise InputError(f"{what} is not valid UTF-8: {path}") from exc
        text = raw.decode(fallback_encoding, errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno}): {path}") from exc


def field(obj: Any, key: str, where: str, kind: type | tuple[type, ...] | None = None) -> Any:
    """Fetch ``obj[key]``; raise :class:`InputError` naming ``where`` and ``key`` if absent or mistyped."""
    if not isinstance(obj, Mapping):
        raise InputError(f"{where}: expected an object with field {key!r}, got {type(obj).__name__}")
    if key not in obj:
        raise InputError(f"{where}: missing field {key!r}")
    value = obj[key]
    if kind is not None and not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InputError(f"{where}: field {key!r} should be {names}, got {type(value).__name__}")
    return value
