"""Readers of the released SA-Co ground truth: image sets (Gold, Silver, Bronze) and SA-Co/VEval video sets.

**Images** (COCO-like JSON, one file per subset): ``images`` lists *image-phrase pairs* (``id``,
``file_name``, ``text_input`` = the noun phrase, ``height``, ``width``, ``is_instance_exhaustive``),
``annotations`` the instance masks (``image_id`` = the pair, ``segmentation`` as RLE or polygons,
``iscrowd``). A pair without annotations is a negative pair. SA-Co/Gold ships three annotations of
each subset, ``gold_<subset>_merged_{a,b,c}_<...>_<split>.json``: they are read as one subset whose
first file is the main ground truth and the others the oracle alternatives (see
:func:`eval.saco.metrics.select_oracle`). Silver: ``silver_<subset>_merged_<split>.json``.

**Video** (YouTube-VIS-like JSON, one file per domain and split, ``saco_veval_<domain>_<split>.json``):
``videos`` (``id``, ``file_names`` of the annotated frames, ``height``, ``width``), ``annotations``
(masklets: ``segmentations`` per frame or null, ``video_id``, ``category_id``, ``iscrowd``),
``categories`` (``id``, ``name`` = the phrase) and ``video_np_pairs`` (every video-phrase pair asked,
negatives included: ``video_id``, ``category_id``, ``noun_phrase``).

``data`` is one JSON file or a folder; in a folder every ``*_<split>.json`` is read, image files and
video files apart (:func:`load_saco_images`, :func:`load_saco_videos`). Media paths are
``<media_root>/<file_name>`` where ``media_root`` is ``media_dirs[subset]`` if given, else
``media_dirs[""]``, else the JSON's folder.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from eval.saco.metrics import ImagePhraseGT
from eval.saco.video_metrics import Masklet
from sam3_core.errors import InputError, VideoError

logger = logging.getLogger(__name__)

_ANNOTATOR = re.compile(r"^(?P<stem>.+)_merged_(?P<letter>[a-z])_(?P<rest>.+)$")
_PREFIXES = ("gold_", "silver_", "bronze_", "saco_veval_", "saco_")


@dataclass(frozen=True)
class ImagePair:
    """One SA-Co image-phrase pair: the query, the image and its ground truth per annotator (first = main)."""

    id: str
    pair_id: int | str
    subset: str
    phrase: str
    image_path: Path
    height: int
    width: int
    annotations: tuple[ImagePhraseGT, ...]

    @property
    def positive(self) -> bool:
        """True when the main annotation has at least one non-crowd instance."""
        gt = self.annotations[0]
        return any(not (gt.crowd and gt.crowd[i]) for i in range(len(gt.masks)))


@dataclass(frozen=True)
class VideoPair:
    """One SA-Co/VEval video-phrase pair: the phrase, the annotated frames and the ground-truth masklets."""

    id: str
    video_id: int | str
    category_id: int | str
    subset: str
    phrase: str
    frames: tuple[Path, ...]
    height: int
    width: int
    masklets: tuple[Masklet, ...]
    video_name: str = ""


def subset_name(path: Path, split: str = "") -> str:
    """``gold_fg_food_merged_a_release_test.json`` -> ``fg_food``; ``saco_veval_sav_test.json`` -> ``sav``."""
    stem = path.stem
    merged = "_merged" in stem
    stem = stem.split("_merged", 1)[0]
    for prefix in _PREFIXES:
        if stem.startswith(prefix):
            stem = stem[len(prefix):]
            break
    if not merged and split and stem.endswith(f"_{split}"):
        stem = stem[: -len(split) - 1]
    return stem or path.stem


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read SA-Co ground truth {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object with 'images' or 'videos'")
    return data


def _files(data: str | Path, split: str) -> list[Path]:
    path = Path(data).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"SA-Co ground truth not found: {path}")
    files = sorted(path.glob(f"*_{split}.json"))
    if not files:
        raise InputError(f"no SA-Co ground truth *_{split}.json in {path}")
    return files


def _media_root(media_dirs: Mapping[str, str | Path], subset: str, json_path: Path) -> Path:
    root = media_dirs.get(subset) or media_dirs.get("")
    return Path(root).expanduser() if root else json_path.parent


def _segmentation_rle(segmentation: Any, height: int, width: int, where: str) -> dict[str, Any]:
    """A compressed RLE (str counts) from an RLE dict (compressed or not) or polygons."""
    try:
        if isinstance(segmentation, list):  # polygons
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation.get("counts"), list):
            rle = mask_utils.frPyObjects(segmentation, *segmentation["size"])
        else:
            rle = {"size": [int(v) for v in segmentation["size"]], "counts": segmentation["counts"]}
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise InputError(f"{where}: malformed segmentation ({exc})") from exc
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]], "counts": counts.decode() if isinstance(counts, bytes) else counts}


def _image_annotations(data: Mapping[str, Any], path: Path) -> tuple[dict[Any, dict], dict[Any, list[dict]]]:
    try:
        images = {img["id"]: img for img in data["images"]}
        by_pair: dict[Any, list[dict]] = {pid: [] for pid in images}
        for ann in data.get("annotations", []):
            if ann["image_id"] not in by_pair:
                raise InputError(f"{path}: annotation {ann.get('id')} names unknown pair {ann['image_id']}")
            by_pair[ann["image_id"]].append(ann)
    except (KeyError, TypeError) as exc:
        raise InputError(f"{path}: not SA-Co image ground truth ({exc!r} missing)") from exc
    return images, by_pair


def _pair_gt(pair_id: Any, image: Mapping[str, Any], anns: Sequence[Mapping[str, Any]], path: Path) -> ImagePhraseGT:
    height, width = int(image["height"]), int(image["width"])
    rles = [_segmentation_rle(a["segmentation"], height, width, f"{path} annotation {a.get('id')}") for a in anns]
    crowd = [bool(a.get("iscrowd", a.get("is_crowd", 0))) for a in anns]
    return ImagePhraseGT(pair_id, rles, crowd if any(crowd) else (), bool(image.get("is_instance_exhaustive", 1)))


def _group(files: Sequence[Path], split: str) -> dict[str, list[Path]]:
    """Files by subset: a Gold subset's ``_merged_a`` / ``_b`` / ``_c`` files together, ``a`` first."""
    groups: dict[str, list[tuple[str, Path]]] = {}
    for path in files:
        match = _ANNOTATOR.match(path.stem)
        key = f"{match['stem']}_{match['rest']}" if match else path.stem
        groups.setdefault(key, []).append((match["letter"] if match else "", path))
    return {subset_name(sorted(g)[0][1], split): [p for _, p in sorted(g)] for g in groups.values()}


def load_saco_images(data: str | Path, split: str = "test", media_dirs: Mapping[str, str | Path] | None = None,
                     subsets: Sequence[str] | None = None) -> list[ImagePair]:
    """Every scored image-phrase pair (instance-exhaustive in every annotation), subset by subset.

    Raises:
        InputError: missing or malformed files, annotations of one subset that disagree on the pairs,
            an unknown subset in ``subsets``.
    """
    groups = {name: paths for name, paths in _group(_files(data, split), split).items()
              if "images" in _read_json(paths[0])}
    if not groups:
        raise InputError(f"no SA-Co image ground truth (JSON with 'images') in {data}")
    unknown = set(subsets or ()) - set(groups)
    if unknown:
        raise InputError(f"unknown SA-Co subsets {sorted(unknown)}; available: {sorted(groups)}")
    pairs: list[ImagePair] = []
    for name, paths in groups.items():
        if subsets and name not in subsets:
            continue
        pairs += _subset_pairs(name, paths, media_dirs or {})
    return pairs


def _subset_pairs(name: str, paths: Sequence[Path], media_dirs: Mapping[str, str | Path]) -> list[ImagePair]:
    versions = [_image_annotations(_read_json(p), p) for p in paths]
    main_images = versions[0][0]
    for (images, _), path in zip(versions[1:], paths[1:], strict=True):
        if set(images) != set(main_images):
            raise InputError(f"{path} and {paths[0]} do not list the same image-phrase pairs")
    root = _media_root(media_dirs, name, paths[0])
    pairs, skipped = [], 0
    for pair_id, image in main_images.items():
        try:
            gts = tuple(_pair_gt(pair_id, images[pair_id], anns[pair_id], path)
                        for (images, anns), path in zip(versions, paths, strict=True))
            phrase, file_name = str(image["text_input"]).strip(), str(image["file_name"])
            height, width = int(image["height"]), int(image["width"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{paths[0]}: pair {pair_id} is malformed ({exc!r})") from exc
        if not phrase:
            raise InputError(f"{paths[0]}: pair {pair_id} has an empty text_input")
        if not all(gt.exhaustive for gt in gts):
            skipped += 1
            continue
        pairs.append(ImagePair(f"{name}/{pair_id}", pair_id, name, phrase, root / file_name, height, width, gts))
    if skipped:
        logger.info("SA-Co %s: %d pairs are not instance-exhaustive and are not scored", name, skipped)
    return pairs


def _masklet(ann: Mapping[str, Any], length: int, height: int, width: int, where: str) -> Masklet:
    segmentations = ann.get("segmentations")
    if not isinstance(segmentations, list) or len(segmentations) != length:
        raise InputError(f"{where}: 'segmentations' must list one entry per frame ({length})")
    frames = [None if s is None else _segmentation_rle(s, height, width, where) for s in segmentations]
    return Masklet(frames, crowd=bool(ann.get("iscrowd", 0)))


def load_saco_videos(data: str | Path, split: str = "test", media_dirs: Mapping[str, str | Path] | None = None,
                     subsets: Sequence[str] | None = None) -> list[VideoPair]:
    """Every video-phrase pair of ``video_np_pairs`` (negatives included), domain by domain.

    Raises:
        InputError: missing or malformed files, or a file without ``video_np_pairs``.
    """
    pairs: list[VideoPair] = []
    found = False
    for path in _files(data, split):
        content = _read_json(path)
        if "videos" not in content:
            continue
        found = True
        name = subset_name(path, split)
        if subsets and name not in subsets:
            continue
        pairs += _video_pairs(content, path, name, _media_root(media_dirs or {}, name, path))
    if not found:
        raise InputError(f"no SA-Co/VEval ground truth (JSON with 'videos') in {data}")
    return pairs


def _video_pairs(content: Mapping[str, Any], path: Path, name: str, root: Path) -> list[VideoPair]:
    if "video_np_pairs" not in content:
        raise InputError(f"{path}: no 'video_np_pairs' (needed to know the negative pairs)")
    try:
        videos = {v["id"]: v for v in content["videos"]}
        phrases = {c["id"]: c["name"] for c in content.get("categories", [])}
        masklets: dict[tuple[Any, Any], list[Masklet]] = {}
        for ann in content.get("annotations", []):
            video = videos[ann["video_id"]]
            where = f"{path} annotation {ann.get('id')}"
            masklets.setdefault((ann["video_id"], ann["category_id"]), []).append(
                _masklet(ann, len(video["file_names"]), int(video["height"]), int(video["width"]), where))
        out = []
        for entry in content["video_np_pairs"]:
            key = (entry["video_id"], entry["category_id"])
            video = videos[key[0]]
            phrase = str(entry.get("noun_phrase") or phrases.get(key[1], "")).strip()
            if not phrase:
                raise InputError(f"{path}: video-phrase pair {key} has no noun phrase")
            out.append(VideoPair(f"{name}/{key[0]}/{key[1]}", key[0], key[1], name, phrase,
                                 tuple(root / f for f in video["file_names"]), int(video["height"]),
                                 int(video["width"]), tuple(masklets.get(key, ())), str(video.get("video_name", ""))))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: not SA-Co/VEval ground truth ({exc!r})") from exc
    return out


class ListedFrames:
    """A video given as a list of frame files (SA-Co/VEval's annotated frames), read on demand.

    Implements :class:`sam3_core.video.frames.FrameSource`; every frame must have the first one's size.
    """

    def __init__(self, paths: Sequence[Path], name: str = "<frames>", fps: float = 6.0) -> None:
        if not paths:
            raise VideoError(f"{name} has no frames")
        self._paths = list(paths)
        self.name, self.fps, self.num_frames = name, fps, len(self._paths)
        first = self.frame(0)
        self.height, self.width = int(first.shape[0]), int(first.shape[1])

    def frame(self, index: int) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        if not 0 <= index < self.num_frames:
            raise VideoError(f"frame index {index} is out of range for {self.name} ({self.num_frames} frames)")
        try:
            with Image.open(self._paths[index]) as image:
                frame = np.asarray(image.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise VideoError(f"cannot read frame {self._paths[index]}: {exc}") from exc
        if index and frame.shape[:2] != (self.height, self.width):
            raise VideoError(f"{self._paths[index]} has another size than the first frame of {self.name}")
        return frame

    def file_names(self) -> list[str]:
        return [p.name for p in self._paths]

    def close(self) -> None:
        return None
