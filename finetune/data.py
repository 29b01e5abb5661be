"""COCO-format instance data as (image, phrase) training pairs for SAM 3's concept prompts.

A COCO instances file maps straight onto promptable concept segmentation: each category name is a
text prompt, and the prompt's targets are every instance of that category in the image. Phrases that
are *absent* are as important (the presence head and the "no detections" answer learn from them):
every image also gets negatives - its own ``"negative_phrases"`` list when present (an extension to
COCO: a list of strings on the image record), plus automatic hard negatives drawn from the categories
that do not occur in it.

Records are validated when the file is read; a bad one raises :class:`DatasetError` naming it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

logger = logging.getLogger(__name__)


class DatasetError(ValueError):
    """The dataset file or one of its records is unusable; the message names the record."""


@dataclass
class Instance:
    """One annotated object. ``bbox`` is COCO ``[x, y, w, h]`` in pixels; ``segmentation`` as stored."""

    category: str
    bbox: list[float]
    segmentation: object
    record: str


@dataclass
class ImageRecord:
    """One image with its instances and explicit negative phrases."""

    image_id: int
    path: Path
    height: int
    width: int
    instances: list[Instance] = field(default_factory=list)
    negatives: list[str] = field(default_factory=list)

    @property
    def phrases(self) -> list[str]:
        """The categories present, in first-seen order."""
        return list(dict.fromkeys(inst.category for inst in self.instances))


def decode_mask(segmentation: object, height: int, width: int, record: str) -> np.ndarray:
    """A COCO segmentation (polygon list, RLE with list or string counts) as a bool (height, width) mask."""
    try:
        if isinstance(segmentation, list):
            if not segmentation or any(len(poly) < 6 or len(poly) % 2 for poly in segmentation):
                raise DatasetError(f"{record}: a polygon needs at least 3 (x, y) points")
            rles = mask_utils.frPyObjects(segmentation, height, width)
            rle = mask_utils.merge(rles)
        elif isinstance(segmentation, dict) and "counts" in segmentation:
            if list(segmentation.get("size", [])) != [height, width]:
                raise DatasetError(f"{record}: RLE size {segmentation.get('size')} is not the image's "
                                   f"[{height}, {width}]")
            rle = segmentation
            if isinstance(rle["counts"], list):
                rle = mask_utils.frPyObjects(rle, height, width)
            elif isinstance(rle["counts"], str):
                rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
        else:
            raise DatasetError(f"{record}: segmentation must be a polygon list or an RLE dict")
        return mask_utils.decode(rle).astype(bool)
    except DatasetError:
        raise
    except Exception as exc:  # pycocotools raises bare errors on malformed RLE
        raise DatasetError(f"{record}: cannot decode its segmentation ({exc})") from exc


def _check_polygon_bounds(segmentation: object, height: int, width: int, record: str) -> None:
    if not isinstance(segmentation, list):
        return
    for poly in segmentation:
        xs, ys = np.asarray(poly[0::2], float), np.asarray(poly[1::2], float)
        slack = 1.0  # COCO polygons may touch the far border
        if xs.min() < -slack or ys.min() < -slack or xs.max() > width + slack or ys.max() > height + slack:
            raise DatasetError(f"{record}: polygon points lie outside the {width}x{height} image")


def load_coco(annotation_file: str | Path, image_root: str | Path | None = None) -> list[ImageRecord]:
    """Read and validate a COCO instances file.

    Args:
        annotation_file: the JSON file.
        image_root: folder that ``file_name`` is relative to (default: the JSON file's folder).

    Raises:
        DatasetError: unreadable file, missing image, unknown or unnamed category, bad box or mask.
    """
    annotation_file = Path(annotation_file)
    root = Path(image_root) if image_root else annotation_file.parent
    try:
        document = json.loads(annotation_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read {annotation_file}: {exc}") from exc
    for key in ("images", "annotations", "categories"):
        if not isinstance(document.get(key), list):
            raise DatasetError(f"{annotation_file}: missing the {key!r} list")
    categories = {}
    for cat in document["categories"]:
        name = str(cat.get("name", "")).strip()
        if not name:
            raise DatasetError(f"category id={cat.get('id')}: empty name (names are the text prompts)")
        categories[cat.get("id")] = name
    images: dict[int, ImageRecord] = {}
    for img in document["images"]:
        record = f"image id={img.get('id')} ({img.get('file_name')})"
        path = root / str(img.get("file_name", ""))
        if not img.get("file_name") or not path.is_file():
            raise DatasetError(f"{record}: file not found under {root}")
        height, width = int(img.get("height", 0)), int(img.get("width", 0))
        if height <= 0 or width <= 0:
            raise DatasetError(f"{record}: height and width must be positive")
        negatives = img.get("negative_phrases", [])
        if not isinstance(negatives, list) or not all(isinstance(p, str) and p.strip() for p in negatives):
            raise DatasetError(f"{record}: negative_phrases must be a list of non-empty strings")
        images[img["id"]] = ImageRecord(img["id"], path, height, width, negatives=[p.strip() for p in negatives])
    for ann in document["annotations"]:
        record = f"annotation id={ann.get('id')} (image_id={ann.get('image_id')})"
        image = images.get(ann.get("image_id"))
        if image is None:
            raise DatasetError(f"{record}: no image with that id")
        if ann.get("category_id") not in categories:
            raise DatasetError(f"{record}: unknown category_id {ann.get('category_id')}")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and bbox[2] > 0 and bbox[3] > 0):
            raise DatasetError(f"{record}: bbox must be [x, y, w, h] with positive w and h")
        if "segmentation" not in ann:
            raise DatasetError(f"{record}: no segmentation")
        _check_polygon_bounds(ann["segmentation"], image.height, image.width, record)
        image.instances.append(Instance(categories[ann["category_id"]], list(map(float, bbox)),
                                        ann["segmentation"], record))
    records = list(images.values())
    if not records:
        raise DatasetError(f"{annotation_file}: no images")
    used = {inst.category for rec in records for inst in rec.instances}
    if not used:
        raise DatasetError(f"{annotation_file}: no annotations, nothing to learn from")
    logger.info("%s: %d images, %d instances, %d categories", annotation_file, len(records),
                sum(len(r.instances) for r in records), len(used))
    return records


def all_phrases(records: list[ImageRecord]) -> list[str]:
    """Every category name used by some instance, sorted."""
    return sorted({inst.category for rec in records for inst in rec.instances})


def load_image(record: ImageRecord) -> np.ndarray:
    """The image as (H, W, 3) uint8, checked against the size the record states."""
    try:
        with Image.open(record.path) as im:
            array = np.array(im.convert("RGB"))
    except OSError as exc:
        raise DatasetError(f"image id={record.image_id} ({record.path}): cannot read ({exc})") from exc
    if array.shape[:2] != (record.height, record.width):
        raise DatasetError(f"image id={record.image_id} ({record.path}): is {array.shape[1]}x{array.shape[0]}, "
                           f"the record says {record.width}x{record.height}")
    return array


def instance_masks(record: ImageRecord) -> list[np.ndarray]:
    """Decoded bool masks, one per instance, in the record's order."""
    return [decode_mask(inst.segmentation, record.height, record.width, inst.record) for inst in record.instances]
