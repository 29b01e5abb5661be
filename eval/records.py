"""The files of an evaluation run folder: ``run.json`` (its configuration) and ``predictions.jsonl``.

``predictions.jsonl`` holds one JSON object per finished sample, appended as soon as the sample is
done and made durable (``flush`` + ``fsync``) before the next one is written. A run that is killed
can therefore leave at most one incomplete line, always the last one. :meth:`PredictionLog.open`
notices it (no trailing newline, or not valid JSON) and cuts the file back to the last complete line,
so the sample is simply run again; every complete line is kept, and its sample is not run again.

``run.json`` records what the predictions mean (dataset, split, planner, models, settings). Resuming
into a folder whose ``run.json`` differs in any of those is refused with :class:`ConfigMismatch`,
so predictions of two different configurations never end up in one file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sam3_core.errors import InputError, UsageError

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
PREDICTIONS_FILE = "predictions.jsonl"
FORMAT_VERSION = 1
#: Keys of ``run.json`` that must match for a run to resume; everything else is informational.
IDENTITY_KEYS = ("format", "task", "planner", "sam3_model", "llm", "settings")
#: Values of identity keys that older ``run.json`` files lack (runs made before the key existed).
IDENTITY_DEFAULTS: dict[str, Any] = {"planner": "agent"}


class ConfigMismatch(UsageError):
    """The run folder holds predictions made with another configuration."""


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two JSON values (``key: old -> new``)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        lines: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            lines += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return lines
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def _normalized(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value))


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The ``run.json`` of ``run_dir``; raises :class:`InputError` when it is missing or unreadable."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise InputError(f"{path} not found: is {run_dir} an evaluation run folder?")
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT_VERSION:
        raise InputError(f"{path} is not a run configuration of format {FORMAT_VERSION}")
    return config


def prepare_run_dir(run_dir: str | Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """Create ``run_dir`` with ``config`` as its ``run.json``, or check that an existing one matches.

    ``config`` must hold the :data:`IDENTITY_KEYS`; other keys (e.g. ``"runtime"``) are updated on
    every start. Returns the configuration now on disk. Raises :class:`ConfigMismatch` naming every
    difference when the folder was made with another configuration.
    """
    missing = [k for k in IDENTITY_KEYS if k not in config]
    if missing:
        raise UsageError(f"run configuration lacks {missing}")
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = _normalized(dict(config))
    path = folder / RUN_FILE
    if path.exists():
        existing = {**IDENTITY_DEFAULTS, **read_run_config(folder)}
        changes = [line for key in IDENTITY_KEYS for line in _diff(existing.get(key), wanted[key], f"{key}.")]
        if changes:
            raise ConfigMismatch(
                f"{folder} holds a run with another configuration ({'; '.join(changes)}). "
                "Use a new --out folder, or the same options to resume that run."
            )
        wanted = {**existing, **{k: v for k, v in wanted.items() if k not in IDENTITY_KEYS}}
    elif (folder / PREDICTIONS_FILE).exists():
        raise ConfigMismatch(f"{folder} has {PREDICTIONS_FILE} but no {RUN_FILE}; refusing to mix runs")
    _write_atomic(path, json.dumps(wanted, indent=1, sort_keys=True) + "\n")
    return wanted


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json(path: str | Path, document: Any, *, compact: bool = False) -> None:
    """Write a JSON document atomically (indented unless ``compact``; keys in insertion order)."""
    text = json.dumps(document, separators=(",", ":")) if compact else json.dumps(document, indent=1)
    _write_atomic(Path(path), text + "\n")


def _parse_lines(data: bytes, path: Path) -> tuple[list[dict[str, Any]], int]:
    """Records of the complete lines and the byte length they span (a bad last line is left out)."""
    records: list[dict[str, Any]] = []
    good_end = 0
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if number == len(lines):
            break  # text after the last newline: an unfinished line (or nothing)
        try:
            record = json.loads(raw)
            if not isinstance(record, dict) or "id" not in record:
                raise ValueError("not a record with an 'id'")
        except ValueError as exc:
            if number == len(lines) - 1:
                break  # the last line is damaged: treat it as unfinished
            raise InputError(f"{path}: line {number} is not a valid record ({exc}); fix or remove it") from exc
        records.append(record)
        good_end += len(raw) + 1
    return records, good_end


def read_records(path: str | Path) -> tuple[list[dict[str, Any]], int]:
    """Records of a predictions file and its length in bytes up to the last complete record.

    An incomplete last line is left out (the file is not changed); a damaged line elsewhere raises
    :class:`InputError`. Records with an id seen before are dropped with a warning (first one wins).
    """
    file = Path(path)
    if not file.exists():
        return [], 0
    records, good_end = _parse_lines(file.read_bytes(), file)
    unique: dict[str, dict[str, Any]] = {}
    for record in records:
        key = str(record["id"])
        if key in unique:
            logger.warning("%s: sample %s appears twice; the first record is used", file, key)
            continue
        unique[key] = record
    return list(unique.values()), good_end


class PredictionLog:
    """Append-only, crash-safe ``predictions.jsonl`` of one run folder.

    Use :meth:`open`, then :meth:`append` each finished record; :attr:`records` are all records,
    earlier runs' included. Not thread-safe: append from one thread (the event loop).
    """

    def __init__(self, path: Path, records: list[dict[str, Any]]) -> None:
        self.path = path
        self.records = records
        self._ids = {str(r["id"]) for r in records}
        self._handle = path.open("ab")

    @classmethod
    def open(cls, run_dir: str | Path) -> PredictionLog:
        """Read the existing predictions and cut off an incomplete last line, if any."""
        path = Path(run_dir) / PREDICTIONS_FILE
        records, good_end = read_records(path)
        if path.exists() and path.stat().st_size != good_end:
            logger.warning("%s: dropping an incomplete last line (%d bytes) left by an interrupted run; "
                           "that sample runs again", path, path.stat().st_size - good_end)
            with path.open("r+b") as handle:
                handle.truncate(good_end)
                os.fsync(handle.fileno())
        return cls(path, records)

    def __contains__(self, sample_id: object) -> bool:
        return str(sample_id) in self._ids

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record as a line and make it durable before returning."""
        key = str(record["id"])
        if key in self._ids:
            raise UsageError(f"sample {key} is already in {self.path}")
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        self._handle.write(line.encode("utf-8"))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._ids.add(key)
        self.records.append(dict(record))

    def close(self) -> None:
        """Close the file (records already appended are on disk)."""
        self._handle.close()

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
