"""RefCOCO / RefCOCO+ / RefCOCOg loader in the layout of the ``refer`` toolkit (as LISA uses it).

Files, under ``data_root``:

* ``<dataset>/refs(<split_by>).p`` -- a pickled list of refs, each with ``ref_id``, ``ann_id``,
  ``image_id``, ``split`` and ``sentences`` (``{"sent_id", "sent", "raw", "tokens"}``). It is read
  with a restricted unpickler that builds only plain data (lists, dicts, strings, numbers and the
  builtin containers): a pickle naming any other class or function -- which could run code while
  loading -- is refused with :class:`InputError`;
* ``<dataset>/instances.json`` -- COCO-style ``images`` (``id``, ``file_name``, ``height``,
  ``width``) and ``annotations`` (``id``, ``segmentation`` as polygons or RLE);
* images (COCO train2014), by default in ``images/mscoco/images/train2014`` (LISA's layout).

Every sentence of every ref in the split is one query; the target is the union of the ref's
annotation mask(s). Split selection follows ``REFER.getRefIds``: ``train``/``val`` match exactly,
``test`` matches any split containing "test", ``testA``/``testB`` match splits containing the letter.
Like LISA, the query is ``sent.strip().lower()``.
"""

from __future__ import annotations

import codecs
import logging
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from eval.datasets._common import field, read_json, require_dir, require_file
from sam3_core.errors import InputError

logger = logging.getLogger(__name__)

SPLITS_BY_SCHEME: dict[str, tuple[str, ...]] = {
    "unc": ("train", "val", "testA", "testB"),
    "umd": ("train", "val", "test"),
    "google": ("train", "val", "test"),
}
SCHEMES_BY_DATASET: dict[str, tuple[str, ...]] = {
    "refcoco": ("unc", "google"),
    "refcoco+": ("unc",),
    "refcocog": ("umd", "google"),
}
DEFAULT_IMAGE_DIR = Path("images/mscoco/images/train2014")


@dataclass(frozen=True)
class Sample:
    """One referring expression: image, sentence, and the annotation(s) that form its target."""

    id: str
    image_path: Path
    query: str
    ref_id: int
    sent_id: int
    image_id: int
    height: int
    width: int
    segmentations: tuple[Any, ...]

    def load_target(self) -> np.ndarray:
        """Boolean ``(height, width)`` union of the ref's annotation masks."""
        mask = np.zeros((self.height, self.width), dtype=bool)
        for segm in self.segmentations:
            mask |= decode_segmentation(segm, self.height, self.width, where=f"ref {self.ref_id}")
        return mask


def decode_segmentation(segm: Any, height: int, width: int, where: str = "annotation") -> np.ndarray:
    """Decode a COCO segmentation (polygon list, uncompressed or compressed RLE) to a boolean mask."""
    if isinstance(segm, list) and not segm:
        return np.zeros((height, width), dtype=bool)
    try:
        if isinstance(segm, list) and isinstance(segm[0], list):
            rles = mask_utils.frPyObjects(segm, height, width)
        elif isinstance(segm, Mapping) and isinstance(segm.get("counts"), list):
            rles = [mask_utils.frPyObjects(dict(segm), height, width)]
        else:
            items = segm if isinstance(segm, list) else [segm]
            rles = [_compressed_rle(item) for item in items]
        decoded = mask_utils.decode(rles)
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise InputError(f"{where}: unreadable segmentation: {exc}") from exc
    if decoded.ndim == 2:
        decoded = decoded[..., None]
    if decoded.shape[:2] != (height, width):
        raise InputError(f"{where}: segmentation is {decoded.shape[:2]}, image is {(height, width)}")
    return decoded.any(axis=2)


def _compressed_rle(item: Any) -> dict[str, Any]:
    counts = item["counts"]
    return {"size": list(item["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}


def _split_matches(wanted: str, actual: str) -> bool:
    if wanted in ("testA", "testB", "testC"):
        return wanted[-1] in actual
    if wanted == "test":
        return "test" in actual
    return actual == wanted


class _RefsUnpickler(pickle.Unpickler):
    """An unpickler for the refs file that builds only plain data: no class is imported, no code runs.

    A pickle can name any importable callable (``os.system`` included) and have it called while loading;
    a downloaded dataset is untrusted input. The refs file holds only dicts, lists, strings and numbers,
    which need no import; the few builtin containers and the bytes helper that older protocols name are
    allowed, anything else is refused with :class:`InputError`.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        raise pickle.UnpicklingError(
            f"it names {module}.{name}, and a refs file may hold only lists, dicts, strings and numbers "
            "(refused: loading it could run code)"
        )


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    **{(module, kind.__name__): kind for module in ("builtins", "__builtin__")
       for kind in (set, frozenset, list, dict, tuple, str, bytes, bytearray, int, float, complex, bool)},
    ("_codecs", "encode"): codecs.encode,  # bytes in protocol 0-2 pickles written by Python 3
}


def _load_refs(path: Path) -> list[Any]:
    """The refs list of a refer pickle, read with :class:`_RefsUnpickler` (plain data only)."""
    require_file(path, "refer pickle")
    try:
        with path.open("rb") as fh:
            refs = _RefsUnpickler(fh).load()
    except UnicodeDecodeError:  # pickles written by Python 2
        with path.open("rb") as fh:
            refs = _RefsUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError, TypeError) as exc:
        raise InputError(f"refer pickle is unreadable: {path}: {exc}") from exc
    if not isinstance(refs, list):
        raise InputError(f"refer pickle should hold a list of refs, got {type(refs).__name__}: {path}")
    return refs


def _check_names(dataset: str, split_by: str, split: str) -> None:
    if dataset not in SCHEMES_BY_DATASET:
        raise InputError(f"unknown dataset {dataset!r}; expected one of {', '.join(SCHEMES_BY_DATASET)}")
    if split_by not in SCHEMES_BY_DATASET[dataset]:
        choices = ", ".join(SCHEMES_BY_DATASET[dataset])
        raise InputError(f"{dataset} has no split scheme {split_by!r}; expected one of {choices}")
    if split not in SPLITS_BY_SCHEME[split_by]:
        choices = ", ".join(SPLITS_BY_SCHEME[split_by])
        raise InputError(f"{dataset}({split_by}) has no split {split!r}; expected one of {choices}")


def _index_instances(instances: Any, where: str) -> tuple[dict[int, Any], dict[int, Any]]:
    images = field(instances, "images", where, list)
    annotations = field(instances, "annotations", where, list)
    image_by_id = {field(img, "id", f"{where}: image", int): img for img in images}
    ann_by_id = {field(ann, "id", f"{where}: annotation", int): ann for ann in annotations}
    return image_by_id, ann_by_id


def _ref_samples(
    ref: Any, image_by_id: Mapping[int, Any], ann_by_id: Mapping[int, Any], image_dir: Path, where: str
) -> list[Sample]:
    ref_id = field(ref, "ref_id", where, int)
    here = f"{where}: ref {ref_id}"
    ann_field = field(ref, "ann_id", here, (int, list))
    ann_ids = ann_field if isinstance(ann_field, list) else [ann_field]
    missing = [a for a in ann_ids if a not in ann_by_id]
    if missing:
        raise InputError(f"{here}: annotation id(s) {missing} not in instances.json")
    image_id = field(ref, "image_id", here, int)
    if image_id not in image_by_id:
        raise InputError(f"{here}: image id {image_id} not in instances.json")
    image = image_by_id[image_id]
    segmentations = tuple(field(ann_by_id[a], "segmentation", f"{here}: annotation {a}") for a in ann_ids)
    samples = []
    for sent in field(ref, "sentences", here, list):
        sent_id = field(sent, "sent_id", here, int)
        samples.append(
            Sample(
                id=f"{ref_id}-{sent_id}",
                image_path=image_dir / field(image, "file_name", f"{here}: image", str),
                query=field(sent, "sent", f"{here}: sentence {sent_id}", str).strip().lower(),
                ref_id=ref_id,
                sent_id=sent_id,
                image_id=image_id,
                height=field(image, "height", f"{here}: image", int),
                width=field(image, "width", f"{here}: image", int),
                segmentations=segmentations,
            )
        )
    return samples


def load_refcoco(
    data_root: str | Path,
    dataset: str,
    split_by: str,
    split: str,
    image_dir: str | Path | None = None,
) -> list[Sample]:
    """Load one split of RefCOCO, RefCOCO+ or RefCOCOg: one :class:`Sample` per sentence.

    ``image_dir`` defaults to ``<data_root>/images/mscoco/images/train2014``. Raises
    :class:`InputError` for unknown names, missing files or folders, malformed refs, and splits
    that select no refs.
    """
    _check_names(dataset, split_by, split)
    root = Path(data_root)
    refs_path = root / dataset / f"refs({split_by}).p"
    instances_path = root / dataset / "instances.json"
    images = require_dir(Path(image_dir) if image_dir is not None else root / DEFAULT_IMAGE_DIR, "image folder")
    refs = _load_refs(refs_path)
    image_by_id, ann_by_id = _index_instances(read_json(instances_path, "instances file"), str(instances_path))
    samples: list[Sample] = []
    selected = 0
    for ref in refs:
        if not _split_matches(split, str(field(ref, "split", str(refs_path)))):
            continue
        selected += 1
        samples.extend(_ref_samples(ref, image_by_id, ann_by_id, images, str(refs_path)))
    if not selected:
        raise InputError(f"no refs with split {split!r} in {refs_path}")
    logger.info("loaded %d sentences from %d %s(%s) %s refs", len(samples), selected, dataset, split_by, split)
    return samples


def unique_image_ids(samples: Sequence[Sample]) -> list[int]:
    """Image ids in first-seen order (handy to encode each image once)."""
    return list(dict.fromkeys(s.image_id for s in samples))
