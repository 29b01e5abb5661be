"""Scoring a run folder and writing its report.

:func:`score_run` reads ``predictions.jsonl`` and the ground truth named in ``run.json``, scores every
stored prediction again with :meth:`eval.tasks.Task.score` (no model runs), and writes

* ``report.json`` -- metrics per group, sample and failure counts, cost per query, worst cases;
* ``report.md`` -- the same as tables;
* ``worst/*.png`` -- the K lowest-scoring samples, prediction (left) next to ground truth (right);
* ``omnilabel_predictions.json`` (OmniLabel only) -- every detection in the toolkit's result format.

A run calls it when it ends and ``sam3-agent eval score RUN_DIR`` calls it on its own, so both give
the same numbers.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from eval.records import PREDICTIONS_FILE, read_records, read_run_config, write_json
from eval.tasks import EvalItem, OmniLabelTask, Task, TaskSpec, load_task
from sam3_core.images import load_image
from sam3_core.postprocess import rle_to_mask

logger = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
WORST_DIR = "worst"
OMNILABEL_PREDICTIONS = "omnilabel_predictions.json"
MAX_WORST = 8
EMPTY_NOTE = "failed samples are scored as empty predictions (no mask)"
_COST_FIELDS = ("llm_calls", "steps", "verify_calls", "prompt_tokens", "completion_tokens", "total_tokens", "seconds")
_OVERLAY_MAX_WIDTH = 1280
_OVERLAY_MIN_PANEL = 320


def decode_record_masks(record: Mapping[str, Any]) -> np.ndarray:
    """The ``(K, H, W)`` chosen masks of a stored record (``(0, 1, 1)`` when there are none)."""
    masks = [rle_to_mask(rle) for rle in record.get("masks", [])]
    return np.stack(masks) if masks else np.zeros((0, 1, 1), dtype=bool)


def _rescore(task: Task, records: Sequence[Mapping[str, Any]]) -> list[tuple[EvalItem, dict[str, Any], dict]]:
    """``(item, record, fields)`` in dataset order for every record of a sample in the split."""
    items = {item.id: (index, item) for index, item in enumerate(task.items())}
    out = []
    for record in records:
        if record["id"] not in items:
            logger.warning("record %s is not a sample of this split; left out", record["id"])
            continue
        index, item = items[record["id"]]
        fields = task.score_record(item, record)
        changed = [k for k in fields if k in record and record[k] != fields[k]]
        if changed:
            logger.warning("sample %s scores differently now (%s): has the ground truth changed?", item.id, changed)
        out.append((index, item, dict(record), fields))
    out.sort(key=lambda entry: entry[0])
    return [(item, record, fields) for _, item, record, fields in out]


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def _cost(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean model calls, steps, tokens and seconds per query."""
    return {f"mean_{name}": _mean([float(r.get(name, 0)) for r in records]) for name in _COST_FIELDS}


def _failures(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    failed = [r for r in records if not r.get("ok", False)]
    by_cause = Counter(r.get("cause") or r.get("status", "unknown") for r in failed)
    return {"count": len(failed), "by_cause": dict(sorted(by_cause.items())), "note": EMPTY_NOTE}


def _worst(task: Task, scored: Sequence[tuple[EvalItem, dict, dict]], k: int) -> list[tuple[EvalItem, dict, float]]:
    ranked = [(task.quality(item, fields), index) for index, (item, _, fields) in enumerate(scored)]
    ranked.sort()
    return [(scored[i][0], scored[i][1], quality) for quality, i in ranked[:k]]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60]


def render_case(task: Task, item: EvalItem, record: Mapping[str, Any], quality: float) -> Image.Image:
    """Prediction (left) and ground truth (right) of one sample, with a caption above them."""
    pixels = load_image(item.image_path).pixels
    masks = decode_record_masks(record)
    if masks.shape[1:] != pixels.shape[:2]:
        masks = np.zeros((0, *pixels.shape[:2]), dtype=bool)
    left = task.draw_prediction(item, pixels, masks)
    right = task.draw_target(item, pixels)
    if left.width < _OVERLAY_MIN_PANEL:  # small images: enlarge so the caption fits and pixels show
        size = (_OVERLAY_MIN_PANEL, max(1, round(left.height * _OVERLAY_MIN_PANEL / left.width)))
        left, right = (im.resize(size, Image.Resampling.NEAREST) for im in (left, right))
    width, height, gap, header = left.width, left.height, 6, 34
    canvas = Image.new("RGB", (2 * width + gap, height + header), (255, 255, 255))
    canvas.paste(left, (0, header))
    canvas.paste(right, (width + gap, header))
    pen = ImageDraw.Draw(canvas)
    status = record.get("status", "?") + (f" ({record['cause']})" if record.get("cause") else "")
    pen.text((4, 2), f"{item.id}  quality {quality:.3f}  {status}   [prediction | ground truth]", fill=(0, 0, 0))
    pen.text((4, 17), item.query[:160], fill=(60, 60, 60))
    if canvas.width > _OVERLAY_MAX_WIDTH:
        scale = _OVERLAY_MAX_WIDTH / canvas.width
        canvas = canvas.resize((_OVERLAY_MAX_WIDTH, max(1, round(canvas.height * scale))), Image.Resampling.LANCZOS)
    return canvas


def _write_worst(run_dir: Path, task: Task, worst: Sequence[tuple[EvalItem, dict, float]]) -> list[dict[str, Any]]:
    folder = run_dir / WORST_DIR
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    cases = []
    for rank, (item, record, quality) in enumerate(worst, start=1):
        name = f"{rank:02d}_{_safe(item.id)}.png"
        try:
            render_case(task, item, record, quality).save(folder / name)
        except Exception as exc:  # an overlay is a convenience: never lose the report over it
            logger.warning("cannot draw the overlay of sample %s: %s", item.id, exc)
            name = ""
        cases.append({"rank": rank, "id": item.id, "query": item.query, "quality": quality,
                      "status": record.get("status"), "image": f"{WORST_DIR}/{name}" if name else None})
    return cases


def build_report(config: Mapping[str, Any], task: Task, scored: Sequence[tuple[EvalItem, dict, dict]],
                 worst: list[dict[str, Any]]) -> dict[str, Any]:
    """The report dict from the rescored samples."""
    records = [record for _, record, _ in scored]
    in_split = len(task.items())
    ok = sum(1 for r in records if r.get("ok", False))
    return {
        "dataset": task.spec.dataset,
        "split": task.spec.split,
        "task": task.spec.to_dict(),
        "planner": config.get("planner", "agent"),
        "sam3_model": config.get("sam3_model"),
        "llm": config.get("llm"),
        "samples": {"in_split": in_split, "scored": len(records), "not_run": in_split - len(records),
                    "ok": ok, "failed": len(records) - ok},
        "metrics": task.summarize([(item, fields) for item, _, fields in scored]),
        "statuses": dict(sorted(Counter(r.get("status", "unknown") for r in records).items())),
        "failures": _failures(records),
        "cost_per_query": _cost(records),
        "worst": worst,
    }


def score_run(run_dir: str | Path, task: Task | None = None, worst_k: int = MAX_WORST) -> dict[str, Any]:
    """Score ``run_dir`` from its stored predictions and write its report files; returns the report.

    ``task`` defaults to the one recorded in ``run.json``. The predictions file is only read (an
    incomplete last line is ignored).
    """
    folder = Path(run_dir)
    config = read_run_config(folder)
    task = task if task is not None else load_task(TaskSpec.from_dict(config["task"]))
    records, _ = read_records(folder / PREDICTIONS_FILE)
    scored = _rescore(task, records)
    worst = _write_worst(folder, task, _worst(task, scored, min(worst_k, MAX_WORST)))
    report = build_report(config, task, scored, worst)
    write_json(folder / REPORT_JSON, report)
    (folder / REPORT_MD).write_text(render_markdown(report))
    if isinstance(task, OmniLabelTask):
        write_json(folder / OMNILABEL_PREDICTIONS, [d for _, _, fields in scored for d in fields["detections"]],
                   compact=True)
    if task.spec.dataset in ("saco", "saco_video"):
        from eval.saco.predictions import write_predictions

        write_predictions(folder, task.spec.dataset == "saco_video", [(item, record) for item, record, _ in scored])
    logger.info("report written to %s", folder / REPORT_MD)
    return report


# ------------------------------------------------------------------------------------------------ markdown

_TITLES = {"reasonseg": "ReasonSeg", "refcoco": "RefCOCO", "omnilabel": "OmniLabel", "saco": "SA-Co",
           "saco_video": "SA-Co/VEval"}


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _metric_lines(report: Mapping[str, Any]) -> list[str]:
    metrics = report["metrics"]
    if not metrics:
        return ["No samples scored yet."]
    if report["dataset"] in ("saco", "saco_video"):
        from eval.saco.report import saco_metric_lines

        return saco_metric_lines(report)
    if report["dataset"] != "omnilabel":
        rows = [(g, _fmt(m["gIoU"]), _fmt(m["cIoU"]), m["count"]) for g, m in metrics.items()]
        return _table(["group", "gIoU", "cIoU", "samples"], rows)
    if "AP" not in metrics:
        return [str(metrics.get("note", "AP not computed."))]
    groups = [k[len("AP-"):] for k in metrics if k.startswith("AP-")]
    rows = [(g, _fmt(metrics[f"AP-{g}"]), _fmt(metrics[f"AP50-{g}"]), _fmt(metrics[f"AP75-{g}"]),
             _fmt(metrics[f"AR-{g}"]), metrics[f"num-gt-{g}"]) for g in groups]
    lines = [f"**AP (harmonic mean of AP-descr and AP-categ): {_fmt(metrics['AP'])}** over "
             f"{metrics.get('pairs', '?')} (image, description) pairs", ""]
    return lines + _table(["group", "AP", "AP50", "AP75", "AR", "GT boxes"], rows)


def render_markdown(report: Mapping[str, Any]) -> str:
    """``report.md``: headline numbers, metrics per group, failures, cost and worst cases."""
    title = _TITLES.get(report["dataset"], report["dataset"])
    variant = report["task"]["options"].get("variant")
    samples, failures, llm = report["samples"], report["failures"], report.get("llm") or {}
    planner = (f"LLM: `{llm.get('model')}` ({llm.get('tool_protocol')} tool calls)"
               if report.get("planner", "agent") == "agent" else "planner: direct (SAM 3 alone on the query's "
               "noun phrase, no LLM)")
    lines = [f"# {title} {variant + ' ' if variant else ''}{report['split']}: evaluation report", "",
             f"- SAM 3: `{report['sam3_model']}`; {planner}",
             f"- Samples: {samples['scored']} scored of {samples['in_split']} in the split"
             + (f" ({samples['not_run']} not run yet)" if samples["not_run"] else ""),
             f"- Failures: {failures['count']}; {EMPTY_NOTE}", "", "## Metrics", ""]
    lines += _metric_lines(report)
    lines += ["", "## Failures by cause", ""]
    rows = list(failures["by_cause"].items())
    lines += _table(["cause", "samples"], rows) if rows else ["None."]
    lines += ["", "Statuses: " + ", ".join(f"{k} {v}" for k, v in report["statuses"].items()), ""]
    lines += ["## Cost per query", ""]
    cost = report["cost_per_query"]
    lines += _table(["measure", "mean per query"],
                    [(k.removeprefix("mean_").replace("_", " "), f"{v:.2f}") for k, v in cost.items()])
    lines += ["", "## Worst cases", ""]
    rows = [(c["rank"], c["id"], c["query"].replace("|", "/")[:80], _fmt(c["quality"]), c["status"],
             f"![{c['id']}]({c['image']})" if c["image"] else "-") for c in report["worst"]]
    lines += _table(["rank", "id", "query", "quality", "status", "prediction vs ground truth"], rows) \
        if rows else ["None."]
    return "\n".join(lines) + "\n"
