"""The SA-Co part of a run's report: a table of metrics per subset, their average over subsets, all pairs pooled."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_IMAGE_COLUMNS = ("cgF1", "IL_MCC", "positive_micro_F1", "positive_macro_F1", "AP", "AP50", "IL_FPR")
_VIDEO_COLUMNS = ("cgF1", "IL_MCC", "positive_micro_F1", "pHOTA", "DetA", "AssA")
#: Shown x 100 as in the paper's tables (IL_MCC stays in [-1, 1]).
_PERCENT = {"cgF1", "positive_micro_F1", "positive_macro_F1", "AP", "AP50", "IL_FPR", "pHOTA", "DetA", "AssA"}


def _cell(name: str, metrics: Mapping[str, Any]) -> str:
    value = metrics.get(name)
    if not isinstance(value, (int, float)) or value <= -1:
        return "-"
    return f"{100 * value:.2f}" if name in _PERCENT else f"{value:.3f}"


def _row(label: str, metrics: Mapping[str, Any], columns: Sequence[str]) -> str:
    pairs = metrics.get("pairs", "")
    positives = metrics.get("positive_pairs", "")
    return f"| {label} | " + " | ".join(_cell(c, metrics) for c in columns) + f" | {pairs} | {positives} |"


def saco_metric_lines(report: Mapping[str, Any]) -> list[str]:
    """Markdown lines of the metrics section of an SA-Co (image or video) report."""
    metrics = report["metrics"]
    if not metrics:
        return ["No samples scored yet."]
    columns = _VIDEO_COLUMNS if report["dataset"] == "saco_video" else _IMAGE_COLUMNS
    lines = ["cgF1, pmF1 (positive_micro_F1), AP and HOTA values are x 100; IL_MCC is in [-1, 1]. "
             "`average` is the mean over subsets (how the paper averages SA-Co/Gold); `all` pools every pair.", "",
             "| subset | " + " | ".join(columns) + " | pairs | positive pairs |",
             "|" + "---|" * (len(columns) + 3)]
    lines += [_row(name, m, columns) for name, m in sorted(metrics["subsets"].items())]
    if len(metrics["subsets"]) > 1:
        lines.append(_row("average", metrics["average"], columns))
    lines.append(_row("all", metrics["all"], columns))
    return lines


def saco_headline(report: Mapping[str, Any]) -> str:
    """One line for the log: cgF1 (x 100), IL_MCC and pmF1 (x 100) averaged over subsets."""
    metrics = report["metrics"]
    if not metrics:
        return "no samples scored"
    average = metrics["average"] if len(metrics["subsets"]) > 1 else metrics["all"]
    extra = f", pHOTA {_cell('pHOTA', average)}" if report["dataset"] == "saco_video" else \
        f", AP {_cell('AP', average)}"
    return (f"cgF1 {_cell('cgF1', average)}, IL_MCC {_cell('IL_MCC', average)}, "
            f"pmF1 {_cell('positive_micro_F1', average)}{extra} over {len(metrics['subsets'])} subset(s)")
