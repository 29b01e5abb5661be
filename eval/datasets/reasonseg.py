"""ReasonSeg loader (LISA's reasoning-segmentation benchmark).

Layout: ``<root>/<split>/<name>.jpg`` next to ``<name>.json`` for ``split`` in train / val / test.
Each JSON is a labelme-style file with

* ``text`` -- list of query strings (training images may carry several rephrasings); like LISA's
  evaluation, only the first one is used as the query,
* ``is_sentence`` -- ``true`` for long, sentence-style queries (ReasonSeg test "long"), ``false``
  for short phrases (test "short"),
* ``shapes`` -- polygons ``{"label": ..., "points": [[x, y], ...]}``.

The ground truth is built exactly as LISA's ``get_mask_from_json`` does: shapes labelled exactly
``flag`` (any case) are skipped; the remaining polygons are rasterized OpenCV-style (see
:mod:`eval.datasets.polygon`), sorted by covered pixel count, largest first, and painted in that
order so that smaller shapes drawn later win; a shape whose label contains ``ignore`` paints
"ignore" pixels (value 255 in LISA), every other shape paints target pixels (value 1).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from eval.datasets._common import field, read_json, require_dir, require_file
from eval.datasets.polygon import polygon_coverage
from sam3_core.errors import InputError

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
TARGET_VALUE = 1
IGNORE_VALUE = 255
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class SegTarget:
    """Ground truth of one sample: ``mask`` (target pixels) and ``ignore`` (excluded from I and U)."""

    mask: np.ndarray
    ignore: np.ndarray


@dataclass(frozen=True)
class Sample:
    """One ReasonSeg query: an image, its first query text and the annotation file it comes from."""

    id: str
    image_path: Path
    json_path: Path
    query: str
    is_sentence: bool
    split: str
    queries: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        """``"long"`` for sentence queries, ``"short"`` for phrases (the ReasonSeg test sub-splits)."""
        return "long" if self.is_sentence else "short"

    def load_image(self) -> Image.Image:
        """The image as RGB, rotated by its EXIF orientation (as ``cv2.imread`` returns it)."""
        try:
            with Image.open(self.image_path) as img:
                return ImageOps.exif_transpose(img).convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise InputError(f"cannot read ReasonSeg image {self.image_path}: {exc}") from exc

    def load_target(self) -> SegTarget:
        """Rasterize the annotation into target and ignore masks of the image's (oriented) size."""
        anno = read_json(self.json_path, "ReasonSeg annotation", fallback_encoding="cp1252")
        shapes = field(anno, "shapes", str(self.json_path), list)
        height, width = image_size(self.image_path)
        labels = rasterize_shapes(shapes, height, width, where=str(self.json_path))
        return SegTarget(mask=labels == TARGET_VALUE, ignore=labels == IGNORE_VALUE)


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of an image after applying its EXIF orientation, reading only the header."""
    require_file(path, "image")
    try:
        with Image.open(path) as img:
            width, height = img.size
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from exc
    if orientation in (5, 6, 7, 8):  # rotated by 90 or 270 degrees
        width, height = height, width
    return height, width


def rasterize_shapes(shapes: Sequence[Any], height: int, width: int, where: str = "shapes") -> np.ndarray:
    """Label map (``uint8``: 0 background, 1 target, 255 ignore) from labelme shapes, LISA's way."""
    coverages: list[np.ndarray] = []
    values: list[int] = []
    for index, shape in enumerate(shapes):
        label = field(shape, "label", f"{where}: shape {index}", str)
        points = field(shape, "points", f"{where}: shape {index}", list)
        if label.lower() == "flag":  # deprecated, meaningless annotations
            continue
        try:
            coverages.append(polygon_coverage(points, height, width))
        except (TypeError, ValueError) as exc:
            raise InputError(f"{where}: shape {index} has malformed points: {exc}") from exc
        values.append(IGNORE_VALUE if "ignore" in label.lower() else TARGET_VALUE)
    labels = np.zeros((height, width), dtype=np.uint8)
    areas = np.array([int(c.sum()) for c in coverages], dtype=np.int64)
    # Ascending stable sort, reversed: largest area first, equal areas in reverse file order. That is
    # what LISA's ``np.argsort(area_list)[::-1]`` gives under its pinned numpy 1.24 (insertion sort
    # for up to 16 items); newer numpy builds with SIMD sorting may order equal areas differently.
    for index in np.argsort(areas, kind="stable")[::-1]:
        labels[coverages[index]] = values[index]
    return labels


def _queries(anno: Any, where: str) -> tuple[str, ...]:
    text = field(anno, "text", where, (list, str))
    items = [text] if isinstance(text, str) else text
    queries = tuple(q.strip() for q in items if isinstance(q, str))
    if not queries or len(queries) != len(items) or not queries[0]:
        raise InputError(f"{where}: field 'text' must be a non-empty list of strings, got {text!r}")
    return queries


def load_reasonseg(root: str | Path, split: str) -> list[Sample]:
    """Load every image of ``<root>/<split>`` as one :class:`Sample` (query = first text).

    Raises :class:`InputError` for an unknown split, a missing folder, a folder without images,
    an image without its JSON, or a JSON without ``text`` / ``is_sentence`` / ``shapes``.
    """
    if split not in SPLITS:
        raise InputError(f"unknown ReasonSeg split {split!r}; expected one of {', '.join(SPLITS)}")
    split_dir = require_dir(Path(root) / split, f"ReasonSeg {split} folder")
    images = sorted(split_dir.glob("*.jpg"))
    if not images:
        raise InputError(f"no .jpg images in ReasonSeg {split} folder {split_dir}")
    samples = []
    for image_path in images:
        json_path = require_file(image_path.with_suffix(".json"), "ReasonSeg annotation for " + image_path.name)
        anno = read_json(json_path, "ReasonSeg annotation", fallback_encoding="cp1252")
        where = str(json_path)
        queries = _queries(anno, where)
        is_sentence = field(anno, "is_sentence", where, (bool, int))
        field(anno, "shapes", where, list)
        samples.append(
            Sample(
                id=image_path.stem,
                image_path=image_path,
                json_path=json_path,
                query=queries[0],
                is_sentence=bool(is_sentence),
                split=split,
                queries=queries,
            )
        )
    logger.info("loaded %d ReasonSeg %s samples from %s", len(samples), split, split_dir)
    return samples
