"""A synthetic instance-segmentation dataset in COCO format: coloured shapes on textured backgrounds.

Each image holds a few objects whose category name is "<colour> <shape>" (e.g. "red circle"), so the
names are the text prompts. Several instances of one category share an image with distractors (the
same shape in another colour, another shape in the same colour) and unlabelled clutter (grey specks),
so a model has to use both words of the phrase. Sizes vary about 2x. Masks are stored as COCO RLE.

Everything is drawn with numpy from a seeded generator: the same seed writes the same dataset.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

logger = logging.getLogger(__name__)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (235, 210, 40),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")


@dataclass(frozen=True)
class SyntheticSpec:
    """Shape of a generated dataset. Sizes are in pixels of the square image."""

    image_size: int = 112
    min_objects: int = 2
    max_objects: int = 4
    min_radius: int = 10
    max_radius: int = 22
    clutter: int = 4
    colours: tuple[str, ...] = tuple(COLOURS)
    shapes: tuple[str, ...] = SHAPES


def category_names(spec: SyntheticSpec = SyntheticSpec()) -> list[str]:
    """The category names (= prompts), in id order starting at 1."""
    return [f"{c} {s}" for c in spec.colours for s in spec.shapes]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A muted texture: a grey level, a gentle gradient, optional stripes and noise. (size, size, 3) float."""
    base = rng.uniform(90, 170)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, np.pi)
    gradient = (np.cos(angle) * xx + np.sin(angle) * yy) * rng.uniform(-30, 30)
    image = np.full((size, size), base, np.float32) + gradient
    if rng.random() < 0.5:
        period = rng.uniform(6, 16)
        image += 10 * np.sign(np.sin(2 * np.pi * (xx * np.cos(angle) - yy * np.sin(angle)) * size / period))
    image = np.repeat(image[..., None], 3, axis=2) + rng.normal(0, 6, (size, size, 3))
    return image


def _shape_mask(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    """Boolean (size, size) mask of one shape centred at (cx, cy) with half-extent r."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    if shape == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    if shape == "square":
        return (np.abs(xx - cx) <= r * 0.85) & (np.abs(yy - cy) <= r * 0.85)
    if shape == "triangle":  # apex up; inside when below both slanted edges and above the base
        top, bottom = cy - r, cy + r * 0.8
        half_width = (yy - top) / (bottom - top) * r
        return (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= half_width)
    raise ValueError(f"unknown shape {shape!r}")


def draw_image(rng: np.random.Generator, spec: SyntheticSpec) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """One image (H, W, 3 uint8) and its objects as (category name, bool mask), masks non-overlapping."""
    size = spec.image_size
    image = _background(rng, size)
    occupied = np.zeros((size, size), bool)
    objects: list[tuple[str, np.ndarray]] = []
    names = category_names(spec)
    # Favour repeats of one category so images show several instances of the prompted thing.
    focus = names[rng.integers(len(names))]
    wanted = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    for _ in range(wanted * 10):
        if len(objects) >= wanted:
            break
        name = focus if rng.random() < 0.45 else names[rng.integers(len(names))]
        r = rng.uniform(spec.min_radius, spec.max_radius)
        cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
        mask = _shape_mask(name.split(" ", 1)[1], cx, cy, r, size)
        if mask.sum() < 12 or (mask & _dilate(occupied)).any():
            continue
        colour = np.array(COLOURS[name.split(" ", 1)[0]], np.float32) + rng.normal(0, 8, 3)
        image[mask] = colour + rng.normal(0, 5, (int(mask.sum()), 3))
        occupied |= mask
        objects.append((name, mask))
    for _ in range(spec.clutter):  # small grey specks: things that are no category at all
        r = rng.uniform(1.5, 3.5)
        speck = _shape_mask("circle", rng.uniform(0, size), rng.uniform(0, size), r, size) & ~occupied
        image[speck] = rng.uniform(40, 220)
    return np.clip(image, 0, 255).astype(np.uint8), objects


def _dilate(mask: np.ndarray, steps: int = 2) -> np.ndarray:
    out = mask.copy()
    for _ in range(steps):
        out[1:] |= out[:-1]
        out[:-1] |= out[1:]
        out[:, 1:] |= out[:, :-1]
        out[:, :-1] |= out[:, 1:]
    return out


def write_synthetic_dataset(folder: str | Path, num_images: int, *, seed: int = 0,
                            spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Write ``num_images`` PNGs under ``folder/images`` and ``folder/annotations.json`` (COCO instances).

    Returns the annotation file's path. Boxes are COCO ``[x, y, w, h]`` in pixels; masks RLE.
    """
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = category_names(spec)
    ids = {name: i + 1 for i, name in enumerate(names)}
    images, annotations = [], []
    for index in range(num_images):
        image, objects = draw_image(rng, spec)
        file_name = f"images/{index:05d}.png"
        Image.fromarray(image).save(folder / file_name)
        images.append({"id": index + 1, "file_name": file_name, "height": spec.image_size, "width": spec.image_size})
        for name, mask in objects:
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            annotations.append({
                "id": len(annotations) + 1, "image_id": index + 1, "category_id": ids[name],
                "bbox": [float(v) for v in mask_utils.toBbox(rle)], "area": float(mask.sum()), "iscrowd": 0,
                "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
            })
    document = {"images": images, "annotations": annotations,
                "categories": [{"id": ids[n], "name": n} for n in names]}
    path = folder / "annotations.json"
    path.write_text(json.dumps(document))
    logger.info("wrote %d synthetic images, %d instances, to %s", num_images, len(annotations), folder)
    return path


def synthetic_clip(num_frames: int = 8, *, seed: int = 0, spec: SyntheticSpec = SyntheticSpec()) -> list[np.ndarray]:
    """Frames (H, W, 3 uint8) of one synthetic scene whose objects drift a few pixels per frame."""
    rng = np.random.default_rng(seed)
    _, objects = draw_image(rng, spec)
    background = np.clip(_background(rng, spec.image_size), 0, 255)
    frames = []
    for t in range(num_frames):
        frame = background.copy()
        for k, (name, mask) in enumerate(objects):
            shift = (t * (1 + k % 2), t * (k % 3 - 1))
            moved = np.roll(mask, shift, axis=(1, 0))
            frame[moved] = COLOURS[name.split(" ", 1)[0]]
        frames.append(frame.astype(np.uint8))
    return frames
