"""The ``sam3-agent eval`` command tree: run the agent over a benchmark, or re-score a finished run.

::

    sam3-agent eval reasonseg --data DIR --split val --out runs/rs-val --concurrency 16 \\
        --llm-url http://localhost:8000/v1 --model facebook/sam3
    sam3-agent eval refcoco --data DIR --dataset refcocog --split-by umd --split test --out runs/rcg-test
    sam3-agent eval omnilabel --data dataset_all_val_v0.1.3.json --image-dir imgs --out runs/ol-val
    sam3-agent eval score runs/rs-val          # metrics again from predictions.jsonl, no model
    sam3-agent eval reasonseg --data DIR --out runs/rs-val-sam3 --planner direct   # SAM 3 alone, no LLM

``--planner direct`` is the "SAM 3 alone" baseline: the query's main noun phrase (a heuristic, no
LLM) goes straight to SAM 3; the best mask is the answer (OmniLabel: every instance above
``--threshold``, ranked by score). The LLM options are then unused. See :mod:`eval.planners`.

Register it with :func:`add_eval_commands` on the main parser's sub-parsers; each command sets
``func`` (called with the parsed arguments, returning the exit status).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.eval_ray import add_ray_arguments
from cli.options import add_agent_options, add_llm_options, add_model_options, add_threshold_options
from eval.planners import DEFAULT_MAX_WORDS, DEFAULT_PLANNER, PLANNERS

if TYPE_CHECKING:
    from agent.llm import LLMClient
    from eval.planners import PlannerSettings
    from eval.tasks import Task, TaskSpec

logger = logging.getLogger("sam3_agent.eval")

_DEFAULT_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
_NOISY_LOGGERS = ("agent", "tools", "httpx", "sam3_core")


def _add_common(parser: argparse.ArgumentParser, default_split: str) -> None:
    parser.add_argument("--data", required=True, help="dataset folder (OmniLabel: the JSON, or a folder "
                                                      "with <split>.json)")
    parser.add_argument("--split", default=default_split, help=f"split to run (default: {default_split})")
    parser.add_argument("--out", required=True, help="run folder: predictions.jsonl, run.json, report.*")
    parser.add_argument("--concurrency", type=int, default=8, help="queries run at once (default: 8)")
    parser.add_argument("--limit", type=int, help="only the first K queries of the split")
    parser.add_argument("--planner", choices=PLANNERS, default=DEFAULT_PLANNER,
                        help="agent: an LLM uses SAM 3 (default); direct: SAM 3 alone on the query's noun phrase, "
                             "no LLM (the baseline)")
    parser.add_argument("--max-words", type=int, default=DEFAULT_MAX_WORDS,
                        help=f"direct planner: most words of the noun phrase (default: {DEFAULT_MAX_WORDS})")
    parser.add_argument("--worst", type=int, default=8, choices=range(9), metavar="K",
                        help="overlays of the K worst cases, 0..8 (default: 8)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_threshold_options(parser, mask=False)
    add_agent_options(parser)
    add_llm_options(parser)
    add_model_options(parser, max_pixels=False)
    add_ray_arguments(parser)


def add_eval_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` command (with ``reasonseg``, ``refcoco``, ``omnilabel`` and ``score``) to ``subparsers``."""
    evaluation = subparsers.add_parser("eval", help="run the agent over a benchmark, or re-score a run",
                                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = evaluation.add_subparsers(dest="eval_command", required=True)

    reasonseg = commands.add_parser("reasonseg", help="ReasonSeg (gIoU / cIoU, short and long queries)")
    _add_common(reasonseg, "val")
    reasonseg.set_defaults(func=run_command, eval_dataset="reasonseg")

    refcoco = commands.add_parser("refcoco", help="RefCOCO, RefCOCO+ or RefCOCOg (gIoU / cIoU)")
    _add_common(refcoco, "val")
    refcoco.add_argument("--dataset", dest="variant", choices=sorted(_DEFAULT_SPLIT_BY), default="refcoco",
                         help="which of the three (default: refcoco)")
    refcoco.add_argument("--split-by", choices=["unc", "umd", "google"],
                         help="split scheme (default: unc for refcoco/refcoco+, umd for refcocog)")
    refcoco.add_argument("--image-dir", help="COCO train2014 images (default: <data>/images/mscoco/images/train2014)")
    refcoco.set_defaults(func=run_command, eval_dataset="refcoco")

    omnilabel = commands.add_parser("omnilabel", help="OmniLabel (box AP per group, harmonic mean)")
    _add_common(omnilabel, "val")
    omnilabel.add_argument("--image-dir", help="image root (default: the JSON's folder)")
    omnilabel.set_defaults(func=run_command, eval_dataset="omnilabel")

    from cli.eval_saco import add_saco_command  # imports this module's helpers

    add_saco_command(commands)

    score = commands.add_parser("score", help="recompute a run's metrics and report from its predictions")
    score.add_argument("run_dir", help="a run folder written by an eval command")
    score.add_argument("--worst", type=int, default=8, choices=range(9), metavar="K", help="worst-case overlays")
    score.set_defaults(func=score_command)
    return evaluation


def _absolute(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


def task_spec(args: argparse.Namespace) -> TaskSpec:
    """The :class:`TaskSpec` named by the parsed arguments (paths made absolute)."""
    from eval.tasks import TaskSpec

    options: dict[str, Any] = {}
    if args.eval_dataset == "refcoco":
        options = {"variant": args.variant, "split_by": args.split_by or _DEFAULT_SPLIT_BY[args.variant]}
    if args.eval_dataset in ("refcoco", "omnilabel") and args.image_dir:
        options["image_dir"] = _absolute(args.image_dir)
    return TaskSpec(args.eval_dataset, _absolute(args.data) or "", args.split, options)


def _headline(report: dict[str, Any]) -> str:
    metrics = report["metrics"]
    if report["dataset"] in ("saco", "saco_video"):
        from eval.saco.report import saco_headline

        return saco_headline(report)
    if report["dataset"] == "omnilabel":
        return f"AP {metrics['AP']:.4f}" if "AP" in metrics else "AP not computed"
    if not metrics:
        return "no samples scored"
    return ", ".join(f"{g}: gIoU {m['gIoU']:.4f} cIoU {m['cIoU']:.4f} (n={m['count']})" for g, m in metrics.items())


async def _run_with_engine(args: argparse.Namespace, task: Task, client: LLMClient | None,
                           settings: PlannerSettings) -> dict[str, Any]:
    """Check the run folder, load SAM 3, run the benchmark, close SAM 3 (``client`` None: direct planner)."""
    if getattr(args, "ray", None):  # Ray actors load their own engines
        from cli.eval_ray import run_on_ray

        return await run_on_ray(args, task, client, settings)
    from eval.records import prepare_run_dir
    from eval.runner import RunOptions, run_config, run_eval
    from sam3_core.engine import Sam3Engine

    options = RunOptions(concurrency=args.concurrency, limit=args.limit, progress=not args.no_progress,
                         worst_k=args.worst)
    sam3_model = _absolute(args.model) if Path(args.model).expanduser().exists() else args.model
    model_name = await client.model_name() if client is not None else ""
    # Refuse a mismatching run folder before spending time on loading SAM 3.
    prepare_run_dir(args.out, run_config(task, sam3_model, client.config if client else None, model_name, settings))
    engine = await asyncio.to_thread(Sam3Engine.from_pretrained, args.model, args.device, args.dtype,
                                     with_tracker=False)
    try:
        return await run_eval(task, args.out, engine, client, sam3_model=sam3_model, settings=settings,
                              options=options)
    finally:
        engine.close()


async def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from agent.llm import LLMClient
    from agent.settings import AgentSettings
    from cli.common import check_llm, check_model
    from cli.options import llm_config
    from eval.planners import DirectSettings
    from eval.tasks import load_task

    task = load_task(task_spec(args))
    task.items()  # read the dataset before loading any model: a bad path fails fast
    if args.planner != "direct":
        check_llm(args.llm_url, args.llm_api_key or "")  # nothing listening: say so once, before loading SAM 3
    check_model(args.model)  # and the checkpoint: a hub id that cannot be fetched fails in seconds
    if args.planner == "direct":
        direct = DirectSettings(score_threshold=args.threshold, max_words=args.max_words)
        return await _run_with_engine(args, task, None, direct.for_task(task.ranked_detections))
    settings = AgentSettings(score_threshold=args.threshold, max_steps=args.max_steps,
                             verification=not args.no_verify)
    llm = llm_config(args)
    async with LLMClient(llm) as client:
        return await _run_with_engine(args, task, client, settings)


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """Raise the per-query / per-request loggers to WARNING for the block (their levels are restored)."""
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS] if enabled else []
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def run_command(args: argparse.Namespace) -> int:
    """``sam3-agent eval {reasonseg,refcoco,omnilabel}``: run (or resume) a benchmark; returns 0."""
    with _quiet(not getattr(args, "verbose", False)):  # a line per query would bury the progress bar
        report = asyncio.run(_evaluate(args))
    logger.info("%s %s: %s; %d failures; report in %s", report["dataset"], report["split"], _headline(report),
                report["failures"]["count"], Path(args.out) / "report.md")
    return 0


def score_command(args: argparse.Namespace) -> int:
    """``sam3-agent eval score RUN_DIR``: recompute the metrics and rewrite the report; returns 0."""
    from eval.report import score_run

    report = score_run(args.run_dir, worst_k=args.worst)
    logger.info("%s %s: %s; report in %s", report["dataset"], report["split"], _headline(report),
                Path(args.run_dir) / "report.md")
    return 0
