"""Synthetic clips of moving shapes with per-frame ground-truth masks, for training and testing the tracker.

Each clip looks like the synthetic images the demo detector was trained on (:mod:`finetune.synthetic`): a
textured background, grey specks, and a few "<colour> <shape>" objects; here each object also drifts in a
straight line, bouncing off the borders, and objects drawn later cover earlier ones where they overlap, so
ground truth is each object's *visible* region on each frame.

Everything is drawn with numpy from a seeded generator: the same seed gives the same clip.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from finetune.synthetic import COLOURS, SyntheticSpec, category_names
from finetune.synthetic import _background as textured_background  # one texture for images and clips
from finetune.synthetic import _shape_mask as shape_mask

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipSpec:
    """Shape of a generated clip: ``image`` gives size, object count and radii; speeds are pixels per frame."""

    image: SyntheticSpec = field(default_factory=SyntheticSpec)
    num_frames: int = 8
    min_speed: float = 1.0
    max_speed: float = 4.0


@dataclass
class Clip:
    """``frames``: ``(T, H, W, 3)`` uint8. ``names[i]``: object i's category ("red circle").
    ``masks``: ``(N, T, H, W)`` bool, object i's visible pixels on frame t (may be empty when covered)."""

    frames: np.ndarray
    names: list[str]
    masks: np.ndarray


@dataclass
class _Mover:
    name: str
    radius: float
    x: float
    y: float
    dx: float
    dy: float
    colour: np.ndarray

    def step(self, size: int) -> None:
        self.x, self.dx = _bounce(self.x + self.dx, self.dx, self.radius, size)
        self.y, self.dy = _bounce(self.y + self.dy, self.dy, self.radius, size)


def _bounce(position: float, speed: float, radius: float, size: int) -> tuple[float, float]:
    if position < radius:
        return 2 * radius - position, abs(speed)
    if position > size - radius:
        return 2 * (size - radius) - position, -abs(speed)
    return position, speed


def _place(rng: np.random.Generator, spec: ClipSpec) -> list[_Mover]:
    """Objects that do not touch on the first frame; one category favoured, as in the still images."""
    size, image = spec.image.image_size, spec.image
    names = category_names(image)
    focus = names[rng.integers(len(names))]
    wanted = int(rng.integers(image.min_objects, image.max_objects + 1))
    movers: list[_Mover] = []
    for _ in range(wanted * 10):
        if len(movers) >= wanted:
            break
        name = focus if rng.random() < 0.45 else names[rng.integers(len(names))]
        r = rng.uniform(image.min_radius, image.max_radius)
        x, y = rng.uniform(r, size - r), rng.uniform(r, size - r)
        if any(np.hypot(x - m.x, y - m.y) < r + m.radius + 3 for m in movers):
            continue
        speed, angle = rng.uniform(spec.min_speed, spec.max_speed), rng.uniform(0, 2 * np.pi)
        colour = np.array(COLOURS[name.split(" ", 1)[0]], np.float32) + rng.normal(0, 8, 3)
        movers.append(_Mover(name, r, x, y, speed * np.cos(angle), speed * np.sin(angle), colour))
    return movers


def draw_clip(rng: np.random.Generator, spec: ClipSpec | None = None) -> Clip:
    """One clip of ``spec.num_frames`` frames (default :class:`ClipSpec`) and its objects' visible masks."""
    spec = spec or ClipSpec()
    size = spec.image.image_size
    background = textured_background(rng, size)
    specks = [(rng.uniform(0, size), rng.uniform(0, size), rng.uniform(1.5, 3.5), rng.uniform(40, 220))
              for _ in range(spec.image.clutter)]
    movers = _place(rng, spec)
    frames = np.zeros((spec.num_frames, size, size, 3), np.uint8)
    masks = np.zeros((len(movers), spec.num_frames, size, size), bool)
    for t in range(spec.num_frames):
        frame = background.copy()
        for x, y, r, grey in specks:
            frame[shape_mask("circle", x, y, r, size)] = grey
        covered = np.zeros((size, size), bool)
        for i in reversed(range(len(movers))):  # the last object is on top
            m = movers[i]
            shape = shape_mask(m.name.split(" ", 1)[1], m.x, m.y, m.radius, size)
            masks[i, t] = shape & ~covered
            covered |= shape
        for i, m in enumerate(movers):
            visible = masks[i, t]
            frame[visible] = m.colour + rng.normal(0, 5, (int(visible.sum()), 3))
        frames[t] = np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8)
        for m in movers:
            m.step(size)
    return Clip(frames, [m.name for m in movers], masks)


def write_clip(folder: str | Path, clip: Clip) -> Path:
    """Write the frames as ``folder/00000.png``... (a frame folder ``track`` reads) and the ground truth as
    ``folder/annotations.json``: ``{"objects": [{"id", "name", "masks": [RLE per frame]}]}``. Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(clip.frames):
        Image.fromarray(frame).save(folder / f"{t:05d}.png")
    objects = []
    for i, (name, masks) in enumerate(zip(clip.names, clip.masks)):
        rles = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in masks]
        objects.append({"id": i + 1, "name": name,
                        "masks": [{"size": list(r["size"]), "counts": r["counts"].decode("ascii")} for r in rles]})
    (folder / "annotations.json").write_text(json.dumps({"num_frames": len(clip.frames), "objects": objects}))
    logger.info("wrote a %d-frame synthetic clip with %d objects to %s", len(clip.frames), len(clip.names), folder)
    return folder


def read_clip_truth(folder: str | Path) -> tuple[list[str], np.ndarray]:
    """The ``(names, masks (N, T, H, W) bool)`` that :func:`write_clip` stored in ``folder``."""
    document = json.loads((Path(folder) / "annotations.json").read_text())
    names = [o["name"] for o in document["objects"]]
    masks = np.stack([np.stack([mask_utils.decode(r).astype(bool) for r in o["masks"]])
                      for o in document["objects"]])
    return names, masks
