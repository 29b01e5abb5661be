"""Peak memory of one segmentation request per megapixel, stage by stage, with the tiny checkpoint.

Usage::

    python -m bench.engine_memory --megapixels 4 16 --out /tmp/engine_memory.json

For each image size it runs, in one fresh process per size, the stages a ``/v1/segment`` request goes
through: decoding the PNG (``load_image``), the image processor's resize/normalise, the detector with
``score_threshold=0`` (every query kept, the worst case for the number of masks), then each output
format over every mask (rle, png, polygons). Before each stage the kernel's peak-RSS counter is reset
(``/proc/self/clear_refs``), so each figure is that stage's own peak above the memory held before it.
Linux only. Numbers are printed per megapixel of input and per megapixel of mask (masks x pixels).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)
MB = 1 << 20


def _rss_now() -> int:
    return _status_kb("VmRSS") * 1024


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _measure(stage, *args):
    """(result, peak bytes above the RSS before the stage)."""
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _rss_now()
    result = stage(*args)
    return result, _status_kb("VmHWM") * 1024 - before


def _png(height: int, width: int) -> bytes:
    """A mostly flat picture with a few shapes: compresses well, like the abusive 62 KB 64 MP PNG."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), (90, 120, 160))
    draw = ImageDraw.Draw(image)
    for k in range(6):
        x, y = (k * 0.15 + 0.05) * width, (0.2 + 0.1 * (k % 3)) * height
        draw.ellipse([x, y, x + 0.12 * width, y + 0.3 * height], fill=(200, 40 * k, 30))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def one_size(megapixels: float, checkpoint: str) -> dict:
    """Run every stage once for a square-ish image of ``megapixels`` MP; figures in MB."""
    from sam3_core import Sam3Engine
    from sam3_core.images import load_image
    from sam3_core.postprocess import mask_to_polygons, masks_to_rle
    from serving.http.render import mask_png

    height = int((megapixels * 1e6 * 3 / 4) ** 0.5)
    width = int(megapixels * 1e6 / height)
    data = _png(height, width)
    out = {"megapixels": height * width / 1e6, "png_bytes": len(data)}
    with Sam3Engine.from_pretrained(checkpoint, device="cpu", with_tracker=False) as engine:
        engine.segment(np.zeros((64, 64, 3), np.uint8), ["warm up"])
        loaded, out["decode"] = _measure(load_image, data, 10**10)
        handler = engine._handler  # the worker's own preprocessing, run here to time it alone
        _, out["preprocess"] = _measure(handler._encode, [loaded])
        results, out["segment"] = _measure(engine.segment, loaded, ["shape"], None, None, 0.0)
        masks = results[0].masks
        out["masks"] = len(masks)
        _, out["rle"] = _measure(masks_to_rle, masks)
        _, out["png"] = _measure(lambda m: [mask_png(x) for x in m], masks)
        _, out["polygons"] = _measure(lambda m: [mask_to_polygons(x) for x in m], masks)
    for key in ("decode", "preprocess", "segment", "rle", "png", "polygons"):
        out[key] = round(out[key] / MB, 1)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, nargs="+", default=[4.0, 16.0])
    parser.add_argument("--checkpoint", help="a tiny checkpoint folder (default: write one)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)  # internal: run one size here
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.one is not None:
        print(json.dumps(one_size(args.one, args.checkpoint)))
        return
    checkpoint = args.checkpoint
    if checkpoint is None:
        from sam3_core.tiny import write_tiny_checkpoint
        checkpoint = str(write_tiny_checkpoint(tempfile.mkdtemp(prefix="tiny_sam3_"), seed=0))
    rows = []
    for mp in args.megapixels:  # one process per size: every size starts from the same state
        done = subprocess.run([sys.executable, "-m", "bench.engine_memory", "--one", str(mp), "--checkpoint",
                               checkpoint], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the {mp} MP run failed:\n{done.stderr[-3000:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        per_mp = {k: round(row[k] / row["megapixels"], 1) for k in ("decode", "preprocess", "segment")}
        per_mask_mp = {k: round(row[k] / max(1, row["masks"]) / row["megapixels"], 2)
                       for k in ("segment", "rle", "png", "polygons")}
        logger.info("%.1f MP (%d KB PNG, %d masks): MB %s | MB per input MP %s | MB per mask-MP %s",
                    row["megapixels"], row["png_bytes"] // 1024, row["masks"],
                    {k: row[k] for k in ("decode", "preprocess", "segment", "rle", "png", "polygons")},
                    per_mp, per_mask_mp)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
