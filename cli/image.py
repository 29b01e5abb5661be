"""`segment-phrase`: raw SAM 3 on one image or a batch (files, folders, globs, URLs) for noun phrases.

Grammar: images are positionals and phrases come with `-p/--phrase` (repeatable):

    sam3-agent segment-phrase imgs/ 'more/*.jpg' -p dog -p "red car" --out labels/

The older `segment-phrase IMAGE PHRASE...` form is still accepted (exactly one image, then phrases);
a "phrase" that names an existing file or looks like an image is refused rather than searched for.

One image writes one JSON (`--out FILE` or stdout). A batch (several images, a folder or a glob)
writes into the `--out` folder: `<image>.json` per image, `<image>.overlay.png` with
`--overlay`, `coco.json` (COCO instances for the whole batch) and `summary.json`. A bad image
fails only itself; the exit status is 1 when any image failed.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from cli import inputs
from cli.coco import CocoWriter
from cli.common import check_model, read_image_source, write_json
from cli.options import add_model_options, add_threshold_options
from cli.progress import progress
from sam3_core.errors import InputError, Sam3AgentError

logger = logging.getLogger("sam3_agent.cli")


def add_segment_phrase(commands: argparse._SubParsersAction) -> None:
    seg = commands.add_parser("segment-phrase", help="raw SAM 3: every instance of noun phrases in images",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    seg.add_argument("inputs", nargs="*", metavar="IMAGE",
                     help="image files, folders, globs ('imgs/*.jpg') or URLs (old form: IMAGE PHRASE...)")
    seg.add_argument("-p", "--phrase", action="append", default=[], dest="phrase",
                     help="a short noun phrase, e.g. 'red car' (repeatable)")
    seg.add_argument("--out", default="-", help="one image: the JSON file ('-': stdout, the default); "
                                                "a batch: the output folder (required)")
    seg.add_argument("--overlay", nargs="?", const="", metavar="PNG",
                     help="also draw the numbered masks: one image: into PNG; a batch: <image>.overlay.png")
    seg.add_argument("--coco", metavar="FILE", help="also write COCO instances JSON (a batch: default "
                                                    "OUT/coco.json)")
    seg.add_argument("--box", type=float, nargs=4, action="append", metavar=("X1", "Y1", "X2", "Y2"),
                     help="a positive exemplar box in pixels (repeatable); alone it prompts by example")
    seg.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_threshold_options(seg)
    add_model_options(seg)
    seg.set_defaults(func=run_segment_phrase)


def split_grammar(positionals: list[str], phrases: list[str]) -> tuple[list[str], list[str]]:
    """(image arguments, phrases): with ``-p`` every positional is an image, else the old form."""
    if phrases:
        return positionals, inputs.check_phrases(phrases)
    return positionals[:1], inputs.check_phrases(positionals[1:])


def is_batch(specs: list[str], images: list[inputs.ImageInput]) -> bool:
    return len(images) > 1 or any(Path(s).is_dir() or any(c in s for c in "*?[") for s in specs)


def run_segment_phrase(args: argparse.Namespace) -> int:
    specs, phrases = split_grammar(args.inputs, args.phrase)
    if not phrases and not args.box:
        raise InputError("no phrase given; add -p PHRASE (repeatable) or an exemplar --box X1 Y1 X2 Y2")
    images = inputs.expand_images(specs)
    batch = is_batch(specs, images)
    if batch:
        if args.out == "-":
            raise InputError(f"{len(images)} images: a batch writes one JSON per image, give --out FOLDER")
        if args.overlay:
            raise InputError("in a batch, --overlay takes no file name: overlays go to OUT/<image>.overlay.png")
        inputs.check_writable_folder(args.out)
    else:
        inputs.check_writable_file(args.out)
        if args.overlay == "":
            raise InputError("for one image, give --overlay a PNG file name")
        if args.overlay:
            inputs.check_writable_file(args.overlay)
    if args.coco:
        inputs.check_writable_file(args.coco)
    check_model(args.model)

    from sam3_core.engine import EngineOptions, Sam3Engine

    coco = CocoWriter()
    for phrase in phrases:
        coco.category(phrase)
    summary: list[dict[str, Any]] = []
    with Sam3Engine.from_pretrained(args.model, device=args.device, dtype=args.dtype,
                                    options=EngineOptions(max_pixels=args.max_pixels), with_tracker=False) as engine:
        for item in progress(images, total=len(images), desc="images", unit="img", enabled=batch and not
                             args.no_progress):
            try:
                summary.append(_one_image(engine, item, phrases, args, coco, batch))
            except Sam3AgentError as exc:
                if not batch:
                    raise
                logger.error("%s: %s", item.source, exc)
                summary.append({"image": item.source, "error": str(exc)})
    return _finish(args, coco, summary, batch)


def _one_image(engine, item: inputs.ImageInput, phrases: list[str], args: argparse.Namespace, coco: CocoWriter,
               batch: bool) -> dict[str, Any]:
    image = engine.load(read_image_source(item.source))
    results = engine.segment(image, phrases or None, exemplar_boxes=args.box or None,
                             score_threshold=args.threshold, mask_threshold=args.mask_threshold)
    document = {"image": item.source, "image_size": {"height": image.height, "width": image.width},
                "model": str(args.model), "score_threshold": args.threshold,
                "results": [result.to_json() for result in results]}
    out = Path(args.out) / f"{item.name}.json" if batch else args.out
    write_json(document, out)
    if args.overlay is not None:
        overlay = Path(args.out) / f"{item.name}.overlay.png" if batch else Path(args.overlay)
        _write_overlay(image.pixels, results, overlay)
    image_id = coco.add_image(item.source if inputs.is_url(item.source) else Path(item.source).name,
                              image.height, image.width)
    for result in results:
        coco.add_masks(image_id, result.phrase, result.masks, result.scores, result.rles)
    counts = {r.phrase: len(r) for r in results}
    line = {"image": item.source, "output": str(out), "instances": counts}
    if not any(counts.values()):
        line["best"] = _best_below(engine, image, phrases, args)
        logger.warning("%s: %s", item.source, _nothing_found(args.threshold, line["best"]))
    else:
        logger.info("%s: %s -> %s", item.source, ", ".join(f"{p}: {n}" for p, n in counts.items()), out)
    return line


def _best_below(engine, image, phrases: list[str], args: argparse.Namespace) -> dict[str, Any] | None:
    """The best instance score under the threshold (the image's encoding is cached, so this is cheap)."""
    results = engine.segment(image, phrases or None, exemplar_boxes=args.box or None, score_threshold=0.0,
                             mask_threshold=args.mask_threshold)
    scored = [(float(r.scores.max()), r.phrase) for r in results if len(r)]
    if not scored:
        return None
    score, phrase = max(scored)
    return {"score": round(score, 4), "phrase": phrase}


def _nothing_found(threshold: float, best: dict[str, Any] | None) -> str:
    seen = f"best: {best['score']:.2f} for {best['phrase']!r}" if best else "no candidate at all"
    return f"no instance scored above {threshold} ({seen}); lower --threshold to see weaker ones"


def _finish(args: argparse.Namespace, coco: CocoWriter, summary: list[dict[str, Any]], batch: bool) -> int:
    coco_path = args.coco or (str(Path(args.out) / "coco.json") if batch else None)
    if coco_path:
        write_json(coco.document(), coco_path)
    failed = [s for s in summary if "error" in s]
    if batch:
        write_json({"images": summary, "failed": len(failed)}, Path(args.out) / "summary.json")
        found = sum(sum(s["instances"].values()) for s in summary if "instances" in s)
        logger.info("%d images, %d instances, %d failed; written to %s%s", len(summary), found, len(failed),
                    args.out, f" (COCO: {coco_path})" if coco_path else "")
    elif coco_path:
        logger.info("COCO instances written to %s", coco_path)
    return 1 if failed else 0


def _write_overlay(pixels, results, path: str | Path) -> None:
    import numpy as np

    from sam3_core.drawing import render_masks

    masks = [m for r in results for m in r.masks]
    stack = np.stack(masks) if masks else np.zeros((0, *pixels.shape[:2]), dtype=bool)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    render_masks(pixels, stack, list(range(1, len(masks) + 1))).save(path)
