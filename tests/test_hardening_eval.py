"""Regression tests of issue 11 (hardening), rows 17 and 18 of evaluation: two runs on one eval folder, a run killed
while it holds the folder, an untrusted RefCOCO pickle. Each test is named after its row."""

from __future__ import annotations

import asyncio
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sam3_core.errors import InputError

# ------------------------------------------------------------------------------ row 17: one run per folder


def _direct_run(data_root: Path, out: Path, engine) -> dict[str, Any]:
    from eval.planners import DirectSettings
    from eval.runner import RunOptions, run_eval
    from eval.tasks import TaskSpec, load_task

    task = load_task(TaskSpec("reasonseg", str(data_root), "val", {}))
    return asyncio.run(run_eval(task, out, engine, None, sam3_model="tiny", settings=DirectSettings(),
                                options=RunOptions(progress=False)))


def test_row17_second_run_on_a_folder_in_use_is_refused(engine, tmp_path):
    from eval.run_lock import RunDirLocked, hold_run_lock
    from eval.testing import write_reasonseg

    data, out = write_reasonseg(tmp_path / "reasonseg"), tmp_path / "run"
    with hold_run_lock(out):
        with pytest.raises(RunDirLocked, match=rf"in use by another evaluation run \(pid {os.getpid()},"):
            _direct_run(data, out, engine)
        assert not (out / "predictions.jsonl").exists()
    assert _direct_run(data, out, engine)  # free again once the holder let go


def test_row17_lock_of_a_killed_run_is_released(tmp_path):
    from eval.run_lock import RunDirLocked, hold_run_lock

    holder = ("import sys, time\nfrom eval.run_lock import hold_run_lock\n"
              "with hold_run_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE, env=env,
                               text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        with pytest.raises(RunDirLocked, match=f"pid {process.pid}"), hold_run_lock(tmp_path):
            pass
    finally:
        process.kill()
        process.wait()
    with hold_run_lock(tmp_path) as lock:  # killed: the OS released its lock
        assert lock.read_text().startswith(f"pid {os.getpid()}")


# ------------------------------------------------------------------------------ row 18: untrusted inputs


class _Exploit:
    """Pickles into a call of ``Path.touch`` on ``marker``: what a hostile refs file could do with os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _write_refs(root: Path, refs: Any, protocol: int = pickle.DEFAULT_PROTOCOL) -> None:
    from eval.testing import write_refcoco

    write_refcoco(root)
    with (root / "refcoco" / "refs(unc).p").open("wb") as fh:
        pickle.dump(refs, fh, protocol=protocol)


def test_row18_refcoco_pickle_that_runs_code_is_refused(tmp_path):
    from eval.datasets.refcoco import load_refcoco

    marker = tmp_path / "pwned"
    _write_refs(tmp_path / "data", [_Exploit(marker)])
    with pytest.raises(InputError, match=r"pathlib\.Path\.touch.*could run code"):
        load_refcoco(tmp_path / "data", "refcoco", "unc", "val")
    assert not marker.exists()


def test_refcoco_plain_pickles_of_any_protocol_still_load(tmp_path):
    """Not a regression test: the restricted unpickler still reads what a refs file may hold."""
    from eval.datasets.refcoco import load_refcoco
    from eval.testing import write_refcoco

    reference = write_refcoco(tmp_path / "reference")
    with (reference / "refcoco" / "refs(unc).p").open("rb") as fh:
        refs = pickle.load(fh)  # our own fixture file: trusted
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        extra = [{**refs[0], "tags": {"a", "b"}, "raw_bytes": b"\x00\xff"}, *refs[1:]]
        _write_refs(tmp_path / f"p{protocol}", extra, protocol)
        samples = load_refcoco(tmp_path / f"p{protocol}", "refcoco", "unc", "val")
        assert samples and samples[0].query
