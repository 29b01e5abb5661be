"""`segment`: the agent answers a reasoning-segmentation query on one image or a batch.

    sam3-agent segment photo.jpg "the cup the woman drinks from" --out run/
    sam3-agent segment imgs/ 'more/*.png' -q "every ripe tomato" --out runs/tomatoes

Without `-q` the last positional is the query (the old `segment IMAGE QUERY` form); a query that
names an existing file or looks like an image is refused. One image writes `mask.png`,
`overlay.png`, `result.json` and `trace.json` into `--out`; a batch writes those into
`OUT/<image>/` plus `coco.json` (category: the query) and `summary.json`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from cli import inputs
from cli.coco import CocoWriter
from cli.common import check_llm, check_model, read_image_source, write_json
from cli.options import add_agent_options, add_llm_options, add_model_options, add_threshold_options, llm_config
from cli.progress import progress
from sam3_core.errors import InputError, RunFailed, Sam3AgentError

logger = logging.getLogger("sam3_agent.cli")


def add_segment(commands: argparse._SubParsersAction) -> None:
    ask = commands.add_parser("segment", help="answer a reasoning-segmentation query with the agent",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ask.add_argument("inputs", nargs="+", metavar="IMAGE",
                     help="image files, folders, globs or URLs, then the query unless -q is given")
    ask.add_argument("-q", "--query", help='e.g. "the cup the woman is about to drink from"')
    ask.add_argument("--out", required=True, help="output folder: mask.png, overlay.png, result.json, trace.json "
                                                  "(a batch: one sub-folder per image, coco.json, summary.json)")
    ask.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_threshold_options(ask, mask=False)
    add_agent_options(ask)
    add_llm_options(ask)
    add_model_options(ask)
    ask.set_defaults(func=run_segment)


def split_query(positionals: list[str], query: str | None) -> tuple[list[str], str]:
    if query is not None:
        return positionals, inputs.check_query(query)
    if len(positionals) < 2:
        raise InputError("give the images and then the query, or the query with -q \"...\"")
    *specs, last = positionals
    if inputs.looks_like_image(last):
        raise InputError(f"the query {last!r} looks like an image; give the query last or with -q \"...\"")
    return specs, inputs.check_query(last)


def run_segment(args: argparse.Namespace) -> int:
    from agent.settings import AgentSettings

    specs, query = split_query(args.inputs, args.query)
    images = inputs.expand_images(specs)
    batch = len(images) > 1 or any(Path(s).is_dir() or any(c in s for c in "*?[") for s in specs)
    inputs.check_writable_folder(args.out)
    llm = llm_config(args)
    settings = AgentSettings(max_steps=args.max_steps, score_threshold=args.threshold,
                             verification=not args.no_verify)
    check_llm(llm.base_url, llm.api_key)
    check_model(args.model)

    from sam3_core.engine import EngineOptions, Sam3Engine

    coco, summary = CocoWriter(), []
    coco.category(query)
    with Sam3Engine.from_pretrained(args.model, device=args.device, dtype=args.dtype,
                                    options=EngineOptions(max_pixels=args.max_pixels), with_tracker=False) as engine:
        for item in progress(images, total=len(images), desc="images", unit="img", enabled=batch and not
                             args.no_progress):
            out = Path(args.out) / item.name if batch else Path(args.out)
            try:
                summary.append(_one_image(engine, llm, settings, item, query, out, coco))
            except RunFailed as exc:
                if not batch or exc.cause == "llm_unavailable":  # the LLM will not answer the next image either
                    raise
                logger.error("%s: %s", item.source, exc)
                summary.append({"image": item.source, "error": str(exc)})
            except Sam3AgentError as exc:
                if not batch:
                    raise
                logger.error("%s: %s", item.source, exc)
                summary.append({"image": item.source, "error": str(exc)})
    if batch:
        write_json(coco.document(), Path(args.out) / "coco.json")
        write_json({"query": query, "images": summary}, Path(args.out) / "summary.json")
        failed = sum("error" in s for s in summary)
        logger.info("%d images: %d answered, %d failed; written to %s (COCO: coco.json)", len(summary),
                    sum(s.get("status") == "answered" for s in summary), failed, args.out)
        return 1 if failed else 0
    return 0 if summary[0]["status"] in ("answered", "no_mask") else 3


def _one_image(engine, llm, settings, item: inputs.ImageInput, query: str, out: Path,
               coco: CocoWriter) -> dict[str, Any]:
    import numpy as np
    from PIL import Image

    from agent.answers import failure_documents
    from agent.runner import run_agent_sync
    from sam3_core.drawing import render_final
    from sam3_core.postprocess import masks_to_rle

    image = engine.load(read_image_source(item.source))
    out.mkdir(parents=True, exist_ok=True)
    try:
        answer = run_agent_sync(engine, llm, image, query, settings=settings)
    except Exception as exc:  # result.json and trace.json whatever the ending (the trace so far, if any)
        result, trace = failure_documents(query, exc)
        write_json({"image": item.source, "image_size": {"height": image.height, "width": image.width}, **result,
                    "rles": []}, out / "result.json")
        write_json(trace, out / "trace.json")
        raise
    rles = masks_to_rle(answer.masks)
    write_json({"image": item.source, "image_size": {"height": image.height, "width": image.width},
                **answer.to_json(), "rles": rles}, out / "result.json")
    write_json(answer.trace_json(), out / "trace.json")
    Image.fromarray(answer.mask.astype(np.uint8) * 255).save(out / "mask.png")
    render_final(image.pixels, answer.masks, answer.mask_ids).save(out / "overlay.png")
    image_id = coco.add_image(Path(item.source).name, image.height, image.width)
    scores = [1.0] * len(rles)  # the agent's answer carries no per-mask score; 1.0 marks "chosen"
    coco.add_masks(image_id, query, answer.masks, scores, rles)
    logger.info("%s: %s (masks %s, %d model calls); written to %s", item.source, answer.status, answer.mask_ids,
                answer.usage.calls, out)
    if answer.status == "no_mask":
        logger.warning("%s", _why_no_mask(engine, image, answer.trace_json(), settings.score_threshold))
    return {"image": item.source, "status": answer.status, "masks": len(rles), "output": str(out)}


def _tried_phrases(trace: Any) -> list[str]:
    """Every ``text_prompt`` the model sent to ``segment_phrase``, found anywhere in the trace."""
    found: list[str] = []
    stack = [trace]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            prompt = node.get("text_prompt")
            if isinstance(prompt, str) and prompt not in found:
                found.append(prompt)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _why_no_mask(engine, image, trace: dict, threshold: float) -> str:
    phrases = _tried_phrases(trace)
    if not phrases:
        return "the model answered no_mask without trying a phrase"
    results = engine.segment(image, phrases, score_threshold=0.0)
    scored = [(float(r.scores.max()), r.phrase) for r in results if len(r)]
    if not scored:
        return f"no_mask: SAM 3 found no candidate for {phrases}"
    best, phrase = max(scored)
    if best <= threshold:
        return (f"no_mask: no instance scored above {threshold} (best: {best:.2f} for {phrase!r}); "
                "lower --threshold to let the agent see weaker ones")
    return f"no_mask: the model judged that none of SAM 3's candidates (best: {best:.2f} for {phrase!r}) matches"
