"""The evaluation runner end to end: tiny synthetic benchmarks, the tiny SAM 3 and a scripted LLM over HTTP.

The tiny checkpoint has random weights (scores around 0.25), so the agent runs with
``score_threshold=0.2``; the scripted LLM (:class:`eval.testing.AgentScript`) segments the query's
last word and selects every mask found.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from tolerances import assert_nested_close

from agent.llm import LLMConfig
from agent.settings import AgentSettings
from agent.testing import ScriptedLLM
from cli.eval import add_eval_commands
from eval.datasets.reasonseg import load_reasonseg
from eval.metrics import IoUAccumulator
from eval.omnilabel_ap import evaluate_omnilabel
from eval.records import PREDICTIONS_FILE, ConfigMismatch, PredictionLog, read_records
from eval.report import decode_record_masks
from eval.runner import Progress, RunOptions, run_eval
from eval.tasks import TaskSpec, load_task
from eval.testing import AgentScript, omnilabel_gt, write_omnilabel, write_reasonseg, write_refcoco
from sam3_core.errors import InputError

SETTINGS = AgentSettings(score_threshold=0.2)
REPORT_SECTIONS = ("## Metrics", "## Failures by cause", "## Cost per query", "## Worst cases")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval_data")
    return {"reasonseg": write_reasonseg(root / "reasonseg"), "refcoco": write_refcoco(root / "refcoco"),
            "omnilabel": write_omnilabel(root / "omnilabel")}


def spec(data: dict[str, Path], dataset: str) -> TaskSpec:
    options = {"variant": "refcoco", "split_by": "unc"} if dataset == "refcoco" else {}
    return TaskSpec(dataset, str(data[dataset]), "val", options)


def evaluate(engine, server: ScriptedLLM, task_spec: TaskSpec, out: Path, *, settings: AgentSettings = SETTINGS,
             timeout_s: float = 20.0, **options: Any) -> dict[str, Any]:
    """One call of the runner (a fresh task object, as a restarted process would have)."""
    llm = LLMConfig(base_url=server.base_url, model=server.model, api_key="test", timeout_s=timeout_s, max_retries=0)
    run_options = RunOptions(**{"concurrency": 3, "progress": False, **options})
    return asyncio.run(run_eval(load_task(task_spec), out, engine, llm, sam3_model="tiny", settings=settings,
                                options=run_options))


def lines(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / PREDICTIONS_FILE).read_text().splitlines()]


def report_of(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "report.json").read_text())


@pytest.fixture(scope="module")
def reasonseg_run(engine, data, tmp_path_factory) -> tuple[Path, dict[str, Any], AgentScript]:
    """An uninterrupted ReasonSeg run (the reference for the resume and score tests)."""
    script = AgentScript()
    out = tmp_path_factory.mktemp("runs") / "reasonseg"
    with ScriptedLLM(responder=script) as server:
        report = evaluate(engine, server, spec(data, "reasonseg"), out)
    assert not server.errors
    return out, report, script


def eval_main(*argv: str) -> int:
    """``sam3-agent eval ...`` through a parser built the way agent/cli.py builds it."""
    parser = argparse.ArgumentParser(prog="sam3-agent")
    add_eval_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", *argv])
    return args.func(args)


# ------------------------------------------------------------------------------------------ ReasonSeg


def test_reasonseg_run_writes_predictions_and_report(reasonseg_run, data):
    out, report, script = reasonseg_run
    records = lines(out)
    assert sorted(r["id"] for r in records) == ["a_kitchen", "b_street", "c_park", "d_room"]
    assert script.max_in_flight >= 2  # queries really overlapped
    assert all(r["status"] == "answered" and r["masks"] and r["masks"][0]["size"] == [48, 64] for r in records)
    assert all(r["llm_calls"] == 2 and r["total_tokens"] == 30 for r in records)

    # The report's gIoU / cIoU, computed independently from the stored masks and the ground truth. The
    # report takes samples in dataset order (not completion order), so the float sums are reproducible.
    samples = {s.id: s for s in load_reasonseg(data["reasonseg"], "val")}
    by_id = {r["id"]: r for r in records}
    acc = IoUAccumulator()
    for r in (by_id[sample_id] for sample_id in samples):
        target = samples[r["id"]].load_target()
        pred = decode_record_masks(r).any(axis=0)
        record = acc.add(r["id"], pred, target.mask, target.ignore, groups=[samples[r["id"]].group])
        assert (record.intersection, record.union) == (r["intersection"], r["union"])
    expected = acc.summary()
    assert set(report["metrics"]) == {"all", "short", "long"}
    for group, scores in expected.items():
        assert report["metrics"][group]["gIoU"] == scores.giou and report["metrics"][group]["cIoU"] == scores.ciou
        assert report["metrics"][group]["count"] == scores.count
    assert report["samples"] == {"in_split": 4, "scored": 4, "not_run": 0, "ok": 4, "failed": 0}
    assert report["failures"]["count"] == 0 and report["cost_per_query"]["mean_llm_calls"] == 2.0
    assert report_of(out) == report

    markdown = (out / "report.md").read_text()
    assert all(section in markdown for section in REPORT_SECTIONS)
    assert "| short |" in markdown and "| long |" in markdown and "ReasonSeg val" in markdown
    pngs = sorted((out / "worst").glob("*.png"))
    assert len(pngs) == len(report["worst"]) == 4
    assert [c["quality"] for c in report["worst"]] == sorted(c["quality"] for c in report["worst"])
    assert Image.open(pngs[0]).size[0] > 2 * Image.open(samples["a_kitchen"].image_path).size[0]


def test_score_reproduces_the_run_exactly(reasonseg_run, tmp_path):
    out, report, _ = reasonseg_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for name in ("report.json", "report.md"):
        (copy / name).unlink()
    shutil.rmtree(copy / "worst")
    assert eval_main("score", str(copy)) == 0
    assert report_of(copy) == report
    assert (copy / "report.md").read_text() == (out / "report.md").read_text()
    assert len(list((copy / "worst").glob("*.png"))) == 4


def test_killed_run_resumes_to_the_same_metrics(engine, data, reasonseg_run, tmp_path):
    reference_dir, reference, _ = reasonseg_run
    out = tmp_path / "resumed"
    with ScriptedLLM(responder=(script := AgentScript())) as server:
        partial = evaluate(engine, server, spec(data, "reasonseg"), out, limit=2)
        assert partial["samples"] == {"in_split": 4, "scored": 2, "not_run": 2, "ok": 2, "failed": 0}
        done = {r["id"] for r in lines(out)}
        # Killed while writing the third record: half a line, no newline.
        unfinished = next(line for line in (reference_dir / PREDICTIONS_FILE).read_text().splitlines()
                          if json.loads(line)["id"] not in done)
        with (out / PREDICTIONS_FILE).open("a") as handle:
            handle.write(unfinished[: len(unfinished) // 2])
        assert eval_main("score", str(out)) == 0  # scoring reads around the broken line, changes nothing
        assert report_of(out)["samples"]["scored"] == 2

        script.queries.clear()
        resumed = evaluate(engine, server, spec(data, "reasonseg"), out)
        assert len(script.queries) == 2  # only the two samples not yet done ran
        # the resumed samples ran in other batches than in the reference run: metrics within the tolerance
        assert_nested_close(resumed["metrics"], reference["metrics"], what="metrics")

        # Cut the last record in half again: exactly that sample runs again, same metrics.
        text = (out / PREDICTIONS_FILE).read_text()
        (out / PREDICTIONS_FILE).write_text(text[: len(text) - 40])
        script.queries.clear()
        again = evaluate(engine, server, spec(data, "reasonseg"), out)
        assert len(script.queries) == 1
        assert_nested_close(again["metrics"], reference["metrics"], what="metrics")
    assert not server.errors
    assert len(lines(out)) == 4


def test_changed_configuration_is_refused(engine, data, tmp_path):
    out = tmp_path / "run"
    with ScriptedLLM(responder=AgentScript()) as server:
        evaluate(engine, server, spec(data, "reasonseg"), out, limit=1)
        before, asked = (out / "run.json").read_text(), len(server.requests)
        with pytest.raises(ConfigMismatch, match=r"settings\.score_threshold: 0\.2 -> 0\.3"):
            evaluate(engine, server, spec(data, "reasonseg"), out, settings=AgentSettings(score_threshold=0.3))
        other = TaskSpec("refcoco", str(data["refcoco"]), "val", {"variant": "refcoco", "split_by": "unc"})
        with pytest.raises(ConfigMismatch, match=r"task\.dataset: 'reasonseg' -> 'refcoco'"):
            evaluate(engine, server, other, out)
        assert len(server.requests) == asked and (out / "run.json").read_text() == before
        evaluate(engine, server, spec(data, "reasonseg"), out, limit=2, concurrency=1)  # same config: resumes
    assert len(lines(out)) == 2


def test_failures_are_recorded_scored_empty_and_do_not_stop_the_run(engine, data, tmp_path):
    script = AgentScript(fail={"the dog"}, slow={"the cup"}, slow_s=3.0)
    with ScriptedLLM(responder=script) as server:
        report = evaluate(engine, server, spec(data, "reasonseg"), tmp_path / "run", timeout_s=0.5)
    records = {r["id"]: r for r in lines(tmp_path / "run")}
    assert len(records) == 4
    dog, cup = records["c_park"], records["a_kitchen"]
    assert (dog["status"], dog["ok"], dog["cause"]) == ("error", False, "llm_unavailable")
    assert "HTTP 500" in dog["error"] and dog["masks"] == [] and dog["intersection"] == 0 and dog["union"] > 0
    assert (cup["status"], cup["cause"]) == ("error", "llm_timeout") and cup["iou"] == 0.0
    assert report["failures"]["by_cause"] == {"llm_timeout": 1, "llm_unavailable": 1}
    assert "empty predictions" in report["failures"]["note"]
    assert report["samples"]["failed"] == 2 and report["statuses"] == {"answered": 2, "error": 2}
    assert report["metrics"]["short"]["gIoU"] == 0.0  # both short queries failed
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert "| llm_unavailable | 1 |" in markdown and "scored as empty predictions" in markdown


# ------------------------------------------------------------------------------------------ RefCOCO, OmniLabel


def test_refcoco_run(engine, data, tmp_path):
    with ScriptedLLM(responder=AgentScript()) as server:
        report = evaluate(engine, server, spec(data, "refcoco"), tmp_path / "run")
    records = lines(tmp_path / "run")
    assert sorted(r["id"] for r in records) == ["1-10", "1-11", "2-20", "3-30"]
    assert {r["query"] for r in records} >= {"man on the left", "the red car"}
    assert list(report["metrics"]) == ["all"] and report["metrics"]["all"]["count"] == 4
    assert "RefCOCO refcoco val" in (tmp_path / "run" / "report.md").read_text()


def test_omnilabel_run_writes_toolkit_predictions(engine, data, tmp_path):
    out = tmp_path / "run"
    with ScriptedLLM(responder=AgentScript()) as server:
        report = evaluate(engine, server, spec(data, "omnilabel"), out)
        partial = evaluate(engine, server, spec(data, "omnilabel"), tmp_path / "partial", limit=2)
    records = {r["id"]: r for r in lines(out)}
    assert sorted(records) == ["5-1", "5-2", "9-1", "9-3", "9-4"]
    predictions = json.loads((out / "omnilabel_predictions.json").read_text())
    assert predictions and all(set(p) == {"image_id", "bbox", "description_ids", "scores"} for p in predictions)
    for p in predictions:
        record = records[f"{p['image_id']}-{p['description_ids'][0]}"]
        assert len(p["description_ids"]) == len(p["scores"]) == 1 and p["scores"][0] in record["scores"]
        boxes = mask_utils.toBbox([{**m, "counts": m["counts"].encode()} for m in record["masks"]]).tolist()
        assert p["bbox"] in boxes  # the tight box of a chosen mask
    expected = evaluate_omnilabel(omnilabel_gt(), predictions).as_dict()
    assert report["metrics"] == {**expected, "pairs": 5}
    assert {"AP", "AP-descr", "AP-categ"} <= set(report["metrics"])
    assert "harmonic mean" in (out / "report.md").read_text()
    assert partial["metrics"]["pairs"] == 2 and partial["samples"]["not_run"] == 3


# ------------------------------------------------------------------------------------------ command line


def test_cli_run_then_refuse_a_changed_config(tiny_checkpoint, data, tmp_path):
    out = tmp_path / "cli"
    with ScriptedLLM(responder=AgentScript()) as server:
        common = ["reasonseg", "--data", str(data["reasonseg"]), "--out", str(out), "--model", tiny_checkpoint,
                  "--device", "cpu", "--llm-url", server.base_url, "--llm-retries", "0", "--no-progress",
                  "--limit", "2", "--concurrency", "2", "--worst", "1"]
        assert eval_main(*common, "--score-threshold", "0.2") == 0
        with pytest.raises(ConfigMismatch, match="score_threshold"):
            eval_main(*common, "--score-threshold", "0.3")
    run = json.loads((out / "run.json").read_text())
    assert run["llm"]["model"] == "scripted-model" and run["task"]["data"] == str(data["reasonseg"])
    assert len(lines(out)) == 2 and len(list((out / "worst").glob("*.png"))) == 1


# ------------------------------------------------------------------------------------------ files and progress


def test_prediction_log_repairs_only_an_unfinished_last_line(tmp_path):
    path = tmp_path / PREDICTIONS_FILE
    path.write_text('{"id": "a", "v": 1}\n{"id": "b", "v": 2}\n{"id": "c", "v"')
    assert [r["id"] for r in read_records(path)[0]] == ["a", "b"]
    assert path.read_text().endswith('"v"')  # reading never changes the file
    with PredictionLog.open(tmp_path) as log:
        assert "b" in log and "c" not in log
        log.append({"id": "c", "v": 3})
    assert [r["id"] for r in read_records(path)[0]] == ["a", "b", "c"]
    assert path.read_text().count("\n") == 3
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(InputError, match="line 2"):
        PredictionLog.open(tmp_path)


def test_progress_bar_only_on_a_terminal(capsys, monkeypatch):
    assert Progress(3, 0, True, "gIoU")._bar is None  # pytest's stderr is not a terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert Progress(3, 0, False, "gIoU")._bar is None  # --no-progress
    bar = Progress(3, 1, True, "gIoU")
    bar.update(0.5)
    bar.close()
    err = capsys.readouterr().err
    assert "2/3" in err and "gIoU=0.5000" in err


def test_unknown_dataset_and_bad_options():
    with pytest.raises(InputError, match="unknown dataset"):
        load_task(TaskSpec("coco", "/nowhere", "val"))
    with pytest.raises(InputError, match="variant"):
        load_task(TaskSpec("refcoco", "/nowhere", "val", {"variant": "refclef"}))
    with pytest.raises(InputError, match="ground truth not found"):
        load_task(TaskSpec("omnilabel", "/nowhere", "val"))


def test_one_graph_per_run_and_no_threads_left(engine, data, tmp_path, monkeypatch):
    """Queries share one compiled graph; each query's thread leaves the checkpointer when it ends."""
    import eval.runner as runner

    savers = []

    def build(saver):
        savers.append(saver)
        return real_build(saver)

    real_build = runner.build_graph
    monkeypatch.setattr(runner, "build_graph", build)
    with ScriptedLLM(responder=AgentScript()) as server:
        report = evaluate(engine, server, spec(data, "reasonseg"), tmp_path / "run")
    assert report["samples"]["ok"] == 4 and len(savers) == 1
    assert not savers[0].storage and not savers[0].writes  # every thread deleted
