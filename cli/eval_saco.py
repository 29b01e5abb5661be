"""``sam3-agent eval saco`` and ``eval saco-video``: SA-Co image sets and SA-Co/VEval, scored as the paper does.

::

    # SA-Co/Gold, all seven subsets (three annotations each), SAM 3 alone; images under two roots
    sam3-agent eval saco --data annotations/ --split test --image-dir metaclip_images/ \\
        --subset-image-dir sa1b_nps=sa1b_images/ --out runs/gold-sam3 --planner direct --score-threshold 0.05
    # the agent on one Silver subset
    sam3-agent eval saco --data silver_bdd100k_merged_test.json --image-dir bdd/ --out runs/bdd-agent \\
        --llm-url http://localhost:8000/v1
    # SA-Co/VEval SA-V test (frames under media/saco_sav/JPEGImages_24fps)
    sam3-agent eval saco-video --data annotation/ --split test --subsets sav \\
        --image-dir media/saco_sav/JPEGImages_24fps --out runs/veval-sav --planner direct
    sam3-agent eval score runs/gold-sam3      # metrics again from predictions.jsonl

Metrics (cgF1, IL_MCC, pmF1, AP; video: cgF1, pHOTA) per subset, averaged over subsets and pooled,
are in the run's ``report.md``; official-format prediction files are written next to it. Add
``--ray [ADDRESS]`` to spread the samples over Ray actors.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any

from cli.eval import _add_common, _quiet

logger = logging.getLogger("sam3_agent.eval")


def _subset_dir(text: str) -> tuple[str, str]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected SUBSET=DIR, got {text!r}")
    return name, folder


def add_saco_command(eval_subparsers: Any) -> None:
    """Add ``saco`` and ``saco-video`` to the ``eval`` command's sub-parsers."""
    for name, dataset, title in (("saco", "saco", "SA-Co image sets: Gold, Silver, Bronze (cgF1, IL_MCC, pmF1, AP)"),
                                 ("saco-video", "saco_video", "SA-Co/VEval videos (cgF1, pHOTA; direct planner)")):
        parser = eval_subparsers.add_parser(name, help=title, description=__doc__,
                                            formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_common(parser, "test")
        parser.add_argument("--image-dir", help="media root: file names in the JSON are relative to it "
                                                "(default: the JSON's folder)")
        parser.add_argument("--subset-image-dir", type=_subset_dir, action="append", default=[],
                            metavar="SUBSET=DIR", help="media root of one subset (repeatable)")
        parser.add_argument("--subsets", help="comma-separated subsets to run (default: all found)")
        parser.add_argument("--cgf1-threshold", type=float, default=None,
                            help="answers scoring at least this count for cgF1 (default: 0.5, the official value; "
                                 "part of the run's identity)")
        if dataset == "saco_video":
            video = parser.add_argument_group("video engine (default: the checkpoint's values)")
            video.add_argument("--detection-threshold", type=float, help="detector score threshold")
            video.add_argument("--new-object-threshold", type=float, help="score that starts a new masklet")
            video.add_argument("--hotstart-delay", type=int, help="frames results are held back")
        parser.set_defaults(func=saco_command, eval_dataset=dataset)


def saco_spec(args: argparse.Namespace) -> Any:
    """The :class:`~eval.tasks.TaskSpec` of parsed ``saco`` arguments (paths made absolute)."""
    from eval.tasks import TaskSpec

    def absolute(path: str) -> str:
        return str(Path(path).expanduser().resolve())

    media = {"": absolute(args.image_dir)} if args.image_dir else {}
    media.update({name: absolute(folder) for name, folder in args.subset_image_dir})
    subsets = sorted({s.strip() for s in (args.subsets or "").split(",") if s.strip()}) or None
    options = {"media_dirs": media, "subsets": subsets}
    if args.cgf1_threshold is not None:
        options["score_threshold"] = args.cgf1_threshold
    return TaskSpec(args.eval_dataset, absolute(args.data), args.split, options)


def video_options(args: argparse.Namespace) -> Any:
    """The :class:`~sam3_core.video.options.VideoOptions` of parsed ``saco-video`` arguments."""
    from sam3_core.video.options import VideoOptions

    return VideoOptions(score_threshold=args.detection_threshold, new_object_threshold=args.new_object_threshold,
                        hotstart_delay=args.hotstart_delay)


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from agent.llm import LLMClient
    from agent.settings import AgentSettings
    from cli.common import check_llm, check_model
    from cli.options import llm_config
    from eval.planners import DirectSettings
    from eval.tasks import load_task
    from sam3_core.errors import UsageError

    task = load_task(saco_spec(args))
    task.items()  # read the ground truth before loading a model: a bad path fails fast
    if args.planner not in task.planners:
        raise UsageError(f"eval {args.eval_command} runs with --planner {' or '.join(task.planners)} only")
    if args.planner != "direct":
        check_llm(args.llm_url, args.llm_api_key or "")  # nothing listening: say so once, before loading SAM 3
    check_model(args.model)
    if args.planner == "direct":
        settings = DirectSettings(score_threshold=args.threshold, max_words=args.max_words).for_task(True)
        return await _execute(args, task, None, settings)
    settings = AgentSettings(score_threshold=args.threshold, max_steps=args.max_steps,
                             verification=not args.no_verify)
    async with LLMClient(llm_config(args)) as client:
        return await _execute(args, task, client, settings)


async def _execute(args: argparse.Namespace, task: Any, client: Any, settings: Any) -> dict[str, Any]:
    from cli.eval import _run_with_engine
    from cli.eval_ray import run_on_ray
    from eval.planners import planner_name
    from sam3_core.errors import UsageError

    video = args.eval_dataset == "saco_video"
    if planner_name(settings) not in task.planners:
        raise UsageError(f"eval {args.eval_command} runs with --planner {' or '.join(task.planners)} only")
    if not video:
        return await _run_with_engine(args, task, client, settings)  # handles --ray
    if args.ray:
        return await run_on_ray(args, task, client, settings, video_options=video_options(args))
    return await _run_video(args, task, settings)


async def _run_video(args: argparse.Namespace, task: Any, settings: Any) -> dict[str, Any]:
    """Load the video engine and run SA-Co/VEval in this process."""
    from eval.records import prepare_run_dir
    from eval.runner import RunOptions, run_config, run_eval
    from sam3_core.video.engine import VideoEngine

    options = RunOptions(concurrency=args.concurrency, limit=args.limit, progress=not args.no_progress,
                         worst_k=args.worst)
    model = Path(args.model).expanduser()
    sam3_model = str(model.resolve()) if model.exists() else args.model
    prepare_run_dir(args.out, run_config(task, sam3_model, None, "", settings))
    engine = await asyncio.to_thread(VideoEngine.from_pretrained, args.model, args.device, args.dtype,
                                     options=video_options(args))
    try:
        return await run_eval(task, args.out, engine, None, sam3_model=sam3_model, settings=settings, options=options)
    finally:
        engine.close()


def saco_command(args: argparse.Namespace) -> int:
    """``sam3-agent eval saco`` / ``saco-video``: run (or resume) and report; returns 0."""
    from eval.saco.report import saco_headline

    with _quiet(not getattr(args, "verbose", False)):
        report = asyncio.run(_run(args))
    logger.info("%s %s: %s; %d failures; report in %s", report["dataset"], report["split"], saco_headline(report),
                report["failures"]["count"], Path(args.out) / "report.md")
    return 0
