"""``--ray [ADDRESS]`` for the ``sam3-agent eval`` commands: the same run, spread over Ray actors.

::

    sam3-agent eval saco --data gold/ --out runs/gold --planner direct --ray              # local Ray, 2 workers
    sam3-agent eval omnilabel --data val.json --out runs/ol --ray auto --ray-workers 8 --ray-gpus-per-worker 1 \\
        --ray-llm-urls http://n1:8000/v1,http://n2:8000/v1

See :mod:`eval.distributed`. Without ``--ray`` nothing changes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.llm import LLMClient
    from eval.planners import PlannerSettings
    from eval.tasks import Task

LOCAL = "local"


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--ray [ADDRESS]`` and its ``--ray-*`` options to an eval command's parser."""
    group = parser.add_argument_group("Ray (optional: pip install 'sam3-agent[ray]')")
    group.add_argument("--ray", nargs="?", const=LOCAL, default=None, metavar="ADDRESS",
                       help="run samples on Ray actors; ADDRESS of a cluster (auto, ray://host:10001), "
                            "or none for a local Ray instance")
    group.add_argument("--ray-workers", type=int, default=2, help="actors, one SAM 3 engine each (default: 2)")
    group.add_argument("--ray-cpus-per-worker", type=float, default=1.0, help="CPUs per actor (default: 1)")
    group.add_argument("--ray-gpus-per-worker", type=float, default=None,
                       help="GPUs per actor (default: 1 when --device is cuda, else 0)")
    group.add_argument("--ray-llm-urls", default="", help="comma-separated LLM endpoints shared out among actors")


def ray_options(args: argparse.Namespace) -> Any:
    """The :class:`~eval.distributed.RayOptions` of parsed arguments."""
    from eval.distributed import RayOptions

    gpus = args.ray_gpus_per_worker
    if gpus is None:
        gpus = 1.0 if (args.device or "").startswith("cuda") else 0.0
    urls = tuple(u.strip() for u in args.ray_llm_urls.split(",") if u.strip())
    return RayOptions(address=None if args.ray == LOCAL else args.ray, workers=args.ray_workers,
                      cpus_per_worker=args.ray_cpus_per_worker, gpus_per_worker=gpus, llm_urls=urls)


async def run_on_ray(args: argparse.Namespace, task: Task, client: LLMClient | None, settings: PlannerSettings,
                     video_options: Any = None) -> dict[str, Any]:
    """Run an eval command's task on Ray (the driver loads no model); ``video_options``: a video engine's."""
    from eval.distributed import EngineSpec, run_eval_ray
    from eval.runner import RunOptions

    options = RunOptions(concurrency=args.concurrency, limit=args.limit, progress=not args.no_progress,
                         worst_k=args.worst)
    model = Path(args.model).expanduser()
    sam3_model = str(model.resolve()) if model.exists() else args.model
    llm = client.config if client is not None else None
    if llm is not None and not llm.model:  # every actor must ask the same model as run.json records
        from dataclasses import replace

        llm = replace(llm, model=await client.model_name())
    engine = EngineSpec(sam3_model, args.device, args.dtype, video=video_options is not None,
                        video_options=video_options)
    return await run_eval_ray(task, args.out, engine, llm, sam3_model=sam3_model, settings=settings, options=options,
                              ray_options=ray_options(args))
