"""`make venv` installs again after an interrupted install, and after pyproject.toml changed (pip is faked)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE_PYTHON = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/../calls"
case "$*" in *"install --quiet -e"*) [ -f "$(dirname "$0")/../fail" ] && exit 1;; esac
exit 0
"""

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make_venv(venv: Path) -> tuple[int, list[str]]:
    """Run ``make venv`` on ``venv``; returns the exit code and the pip installs it ran (and forgets them)."""
    done = subprocess.run(["make", "-s", "-C", str(ROOT), "venv", f"VENV={venv}", "PYTHON=false"],
                          capture_output=True, text=True, timeout=60)
    calls = venv / "calls"
    installs = [line for line in calls.read_text().splitlines() if "install" in line] if calls.exists() else []
    calls.unlink(missing_ok=True)
    return done.returncode, installs


def test_interrupted_or_outdated_install_runs_pip_again(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(FAKE_PYTHON)
    (venv / "bin" / "python").chmod(0o755)
    stamp = venv / ".installed"

    (venv / "fail").touch()  # the project install breaks off
    code, installs = make_venv(venv)
    assert code != 0 and not stamp.exists() and len(installs) == 2

    (venv / "fail").unlink()
    code, installs = make_venv(venv)
    assert code == 0 and stamp.exists() and installs[-1].endswith("-e .[test]")

    assert make_venv(venv) == (0, [])  # installed and up to date: nothing to do

    old = (ROOT / "pyproject.toml").stat().st_mtime - 60
    os.utime(stamp, (old, old))  # pyproject.toml changed since the install
    code, installs = make_venv(venv)
    assert code == 0 and len(installs) == 2
