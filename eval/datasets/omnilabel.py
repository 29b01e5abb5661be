"""OmniLabel loader (COCO-like JSON with free-form object descriptions).

The ground-truth JSON has

* ``images``: ``{"id", "file_name"}``;
* ``descriptions``: ``{"id", "text", "image_ids", "anno_info": {"type": ...}}`` where ``type`` is
  ``object_description`` (free-form text) or ``object_category`` (a plain class name); a top-level
  ``type`` is accepted too. ``image_ids`` lists the images whose *label space* holds the description;
* ``annotations`` (validation sets only): ``{"id", "image_id", "bbox": [x, y, w, h],
  "description_ids": [...]}``.

Every description in an image's label space is one query (:class:`Sample`); the model answers with
scored boxes, and :func:`eval.omnilabel_ap.evaluate_omnilabel` scores them against this JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.datasets._common import field as get_field
from eval.datasets._common import read_json
from sam3_core.errors import InputError

logger = logging.getLogger(__name__)

DESCRIPTION = "object_description"
CATEGORY = "object_category"
EXPECTED_VERSION = "0.1.2"


@dataclass(frozen=True)
class Description:
    """One OmniLabel text: a free-form description or a category name."""

    id: int
    text: str
    kind: str
    image_ids: tuple[int, ...]

    @property
    def is_category(self) -> bool:
        """True for plain object categories, False for free-form descriptions."""
        return self.kind == CATEGORY

    @property
    def num_words(self) -> int:
        """Word count as the toolkit counts it (whitespace split)."""
        return len(self.text.split())


@dataclass(frozen=True)
class Box:
    """One ground-truth box (``x, y, w, h``) and the descriptions that refer to it."""

    id: int
    image_id: int
    bbox: tuple[float, float, float, float]
    description_ids: tuple[int, ...]
    iscrowd: bool = False


@dataclass(frozen=True)
class Sample:
    """One (image, description) query; ``boxes`` are the ground-truth boxes for that description."""

    id: str
    image_path: Path
    query: str
    image_id: int
    description_id: int
    is_category: bool
    boxes: tuple[tuple[float, float, float, float], ...] = ()


@dataclass(frozen=True)
class OmniLabelData:
    """A parsed OmniLabel JSON: images, descriptions, boxes, and the raw dict for evaluation."""

    raw: Mapping[str, Any]
    image_root: Path
    image_files: dict[int, str]
    descriptions: dict[int, Description]
    boxes: tuple[Box, ...] = ()
    has_boxes: bool = False
    labelspace: dict[int, tuple[int, ...]] = field(default_factory=dict)

    def samples(self) -> list[Sample]:
        """Every (image, description) pair of every label space, images in id order."""
        by_pair: dict[tuple[int, int], list[tuple[float, float, float, float]]] = {}
        for box in self.boxes:
            for descr_id in box.description_ids:
                by_pair.setdefault((box.image_id, descr_id), []).append(box.bbox)
        out = []
        for image_id in sorted(self.image_files):
            for descr_id in self.labelspace.get(image_id, ()):
                descr = self.descriptions[descr_id]
                out.append(
                    Sample(
                        id=f"{image_id}-{descr_id}",
                        image_path=self.image_root / self.image_files[image_id],
                        query=descr.text,
                        image_id=image_id,
                        description_id=descr_id,
                        is_category=descr.is_category,
                        boxes=tuple(by_pair.get((image_id, descr_id), ())),
                    )
                )
        return out


def description_kind(descr: Mapping[str, Any], where: str) -> str:
    """``object_description`` or ``object_category`` from ``anno_info.type`` (or a top-level ``type``)."""
    info = descr.get("anno_info")
    kind = info.get("type") if isinstance(info, Mapping) and "type" in info else descr.get("type")
    if kind not in (DESCRIPTION, CATEGORY):
        raise InputError(f"{where}: 'anno_info.type' must be {DESCRIPTION!r} or {CATEGORY!r}, got {kind!r}")
    return kind


def parse_descriptions(gt: Mapping[str, Any], where: str = "OmniLabel JSON") -> dict[int, Description]:
    """Descriptions by id, in file order; raises :class:`InputError` on a malformed entry."""
    out: dict[int, Description] = {}
    for index, descr in enumerate(get_field(gt, "descriptions", where, list)):
        here = f"{where}: descriptions[{index}]"
        descr_id = get_field(descr, "id", here, int)
        if descr_id in out:
            raise InputError(f"{here}: duplicate description id {descr_id}")
        out[descr_id] = Description(
            id=descr_id,
            text=get_field(descr, "text", here, str),
            kind=description_kind(descr, here),
            image_ids=tuple(get_field(descr, "image_ids", here, list)),
        )
    return out


def parse_boxes(gt: Mapping[str, Any], where: str = "OmniLabel JSON") -> tuple[Box, ...]:
    """Ground-truth boxes of ``annotations`` (empty when the file has none, as test sets)."""
    boxes = []
    for index, ann in enumerate(gt.get("annotations", [])):
        here = f"{where}: annotations[{index}]"
        bbox = get_field(ann, "bbox", here, list)
        if len(bbox) != 4:
            raise InputError(f"{here}: 'bbox' must be [x, y, w, h], got {bbox!r}")
        boxes.append(
            Box(
                id=int(ann.get("id", index)),
                image_id=get_field(ann, "image_id", here, int),
                bbox=(float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3])),
                description_ids=tuple(get_field(ann, "description_ids", here, list)),
                iscrowd=bool(ann.get("iscrowd", False)),
            )
        )
    return tuple(boxes)


def build_labelspace(image_ids: list[int], descriptions: Mapping[int, Description]) -> dict[int, tuple[int, ...]]:
    """Description ids of each image's label space, in description-file order."""
    space: dict[int, list[int]] = {image_id: [] for image_id in image_ids}
    for descr in descriptions.values():
        for image_id in descr.image_ids:
            if image_id in space:
                space[image_id].append(descr.id)
    return {image_id: tuple(ids) for image_id, ids in space.items()}


def parse_omnilabel(
    gt: Mapping[str, Any], image_root: str | Path = ".", where: str = "OmniLabel JSON"
) -> OmniLabelData:
    """Parse an already loaded OmniLabel JSON dict (not modified)."""
    image_files: dict[int, str] = {}
    for index, img in enumerate(get_field(gt, "images", where, list)):
        here = f"{where}: images[{index}]"
        image_files[get_field(img, "id", here, int)] = get_field(img, "file_name", here, str)
    descriptions = parse_descriptions(gt, where)
    boxes = parse_boxes(gt, where)
    return OmniLabelData(
        raw=gt,
        image_root=Path(image_root),
        image_files=image_files,
        descriptions=descriptions,
        boxes=boxes,
        has_boxes="annotations" in gt,
        labelspace=build_labelspace(list(image_files), descriptions),
    )


def load_omnilabel(json_path: str | Path, image_root: str | Path) -> OmniLabelData:
    """Read and parse an OmniLabel JSON; images are resolved against ``image_root``."""
    path = Path(json_path)
    data = read_json(path, "OmniLabel JSON")
    info = data.get("info") if isinstance(data, Mapping) else None
    named_omnilabel = isinstance(info, Mapping) and "omnilabel" in str(info.get("name", "")).lower()
    if named_omnilabel and info.get("version") != EXPECTED_VERSION:
        logger.warning("%s is OmniLabel v%s; the toolkit expects v%s", path, info.get("version"), EXPECTED_VERSION)
    parsed = parse_omnilabel(data, image_root, where=str(path))
    logger.info(
        "loaded OmniLabel %s: %d images, %d descriptions, %d boxes",
        path.name,
        len(parsed.image_files),
        len(parsed.descriptions),
        len(parsed.boxes),
    )
    return parsed
