"""All three benchmarks end to end from the command line: ``sam3-agent eval ...`` through ``cli.main.main``.

Synthetic datasets in the real formats (:mod:`eval.testing`), the tiny SAM 3 checkpoint on CPU, and the
scripted OpenAI-compatible server for the agent planner; the direct planner runs with no server at all.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from agent.testing import ScriptedLLM
from cli.main import main
from eval.records import PREDICTIONS_FILE
from eval.testing import AgentScript, write_omnilabel, write_reasonseg, write_refcoco

#: Nothing listens here: a direct run that tried to reach an LLM would fail.
DEAD_LLM = "http://127.0.0.1:9/v1"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli_data")
    return {"reasonseg": write_reasonseg(root / "reasonseg"), "refcoco": write_refcoco(root / "refcoco"),
            "omnilabel": write_omnilabel(root / "omnilabel")}


def command(dataset: str, data: dict[str, Path], out: Path, checkpoint: str, *extra: str) -> list[str]:
    """The ``eval <dataset>`` arguments for a small CPU run."""
    argv = ["eval", dataset, "--data", str(data[dataset]), "--out", str(out), "--model", checkpoint,
            "--device", "cpu", "--score-threshold", "0.2", "--concurrency", "3", "--no-progress", "--worst", "2",
            "--llm-retries", "0", *extra]
    return argv + (["--dataset", "refcoco", "--split-by", "unc"] if dataset == "refcoco" else [])


def read(run_dir: Path, name: str) -> Any:
    return json.loads((run_dir / name).read_text())


def predictions(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / PREDICTIONS_FILE).read_text().splitlines()]


def rescored_equals(run_dir: Path, tmp_path: Path) -> bool:
    """``eval score`` on a copy without its report writes the same report.json and report.md."""
    copy = tmp_path / f"{run_dir.name}-copy"
    shutil.copytree(run_dir, copy)
    (copy / "report.json").unlink()
    (copy / "report.md").unlink()
    assert main(["eval", "score", str(copy), "--worst", "2"]) == 0
    return read(copy, "report.json") == read(run_dir, "report.json") and \
        (copy / "report.md").read_text() == (run_dir / "report.md").read_text()


SIZES = {"reasonseg": 4, "refcoco": 4, "omnilabel": 5}


@pytest.mark.parametrize("dataset", ["reasonseg", "refcoco", "omnilabel"])
def test_agent_planner_from_the_cli(dataset, data, tiny_checkpoint, tmp_path):
    out = tmp_path / dataset
    with ScriptedLLM(responder=(script := AgentScript())) as server:
        assert main(command(dataset, data, out, tiny_checkpoint, "--llm-url", server.base_url)) == 0
    assert not server.errors and len(script.queries) == SIZES[dataset]
    records = predictions(out)
    assert len(records) == SIZES[dataset] and all(r["llm_calls"] == 2 for r in records)
    report = read(out, "report.json")
    assert report["planner"] == "agent" and report["samples"]["scored"] == SIZES[dataset]
    assert report["llm"]["model"] == "scripted-model"
    if dataset == "omnilabel":
        assert "AP" in report["metrics"] and (out / "omnilabel_predictions.json").is_file()
    else:
        assert report["metrics"]["all"]["count"] == SIZES[dataset]
    assert len(list((out / "worst").glob("*.png"))) == 2
    assert rescored_equals(out, tmp_path)


@pytest.mark.parametrize("dataset", ["reasonseg", "refcoco", "omnilabel"])
def test_direct_planner_from_the_cli_needs_no_llm(dataset, data, tiny_checkpoint, tmp_path):
    out = tmp_path / dataset
    assert main(command(dataset, data, out, tiny_checkpoint, "--planner", "direct", "--llm-url", DEAD_LLM)) == 0
    records = predictions(out)
    assert len(records) == SIZES[dataset]
    assert all(r["llm_calls"] == 0 and r["status"] in ("answered", "no_mask") for r in records)
    if dataset != "omnilabel":
        assert all(len(r["masks"]) <= 1 for r in records)
    run = read(out, "run.json")
    assert run["planner"] == "direct" and run["llm"] is None and "llm_base_url" not in run["runtime"]
    assert run["settings"]["keep"] == ("all" if dataset == "omnilabel" else "best")
    assert read(out, "report.json")["samples"]["ok"] == SIZES[dataset]
    assert rescored_equals(out, tmp_path)


def test_cli_refuses_to_resume_with_another_planner(data, tiny_checkpoint, tmp_path, caplog):
    out = tmp_path / "run"
    direct = command("reasonseg", data, out, tiny_checkpoint, "--limit", "1", "--llm-url", DEAD_LLM)
    assert main([*direct, "--planner", "direct"]) == 0
    with ScriptedLLM(responder=AgentScript()) as server:
        agent = command("reasonseg", data, out, tiny_checkpoint, "--limit", "2", "--llm-url", server.base_url)
        assert main(agent) == 2  # ConfigMismatch: logged, exit status 2
        assert [r for r in server.requests if r.get("messages")] == []
    assert "planner: 'direct' -> 'agent'" in caplog.text
    assert main([*direct, "--planner", "direct", "--max-words", "3"]) == 2
    assert "settings.max_words: 6 -> 3" in caplog.text
    assert len(predictions(out)) == 1
