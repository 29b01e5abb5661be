"""Mask metrics for reasoning / referring segmentation: gIoU and cIoU as LISA computes them.

LISA's evaluation (``train_ds.py::validate`` with ``utils.intersectionAndUnionGPU``) works on the
foreground class of a two-class histogram, per ground-truth mask:

* pixels marked *ignore* (value 255) are removed from both prediction and target, so they count in
  neither the intersection ``I`` nor the union ``U``;
* per sample, ``iou = I / (U + 1e-5)``, and a sample whose union is empty (empty prediction and
  empty target outside the ignore region) scores ``1.0``;
* **gIoU** is the mean of the per-sample values; **cIoU** is ``sum(I) / (sum(U) + 1e-10)``.

The two epsilons are kept so numbers match the reference to float precision. (LISA's distributed
``all_reduce`` additionally divides gIoU by ``count + 1e-5``; that artefact, below 1e-7 relative
for any real benchmark, is not reproduced.)

:class:`IoUAccumulator` collects one :class:`IoURecord` per sample. Records are plain integers and
serialize with :meth:`IoURecord.to_dict`, so a restarted run that reloads them with
:meth:`IoUAccumulator.from_records` reports exactly the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sam3_core.errors import InputError

SAMPLE_EPS = 1e-5
"""Added to each sample's union (LISA: ``intersection_i / (union_i + 1e-5)``)."""
CUMULATIVE_EPS = 1e-10
"""Added to the summed union for cIoU (LISA: ``intersection.sum / (union.sum + 1e-10)``)."""
ALL_GROUP = "all"


def intersection_and_union(pred: np.ndarray, target: np.ndarray, ignore: np.ndarray | None = None) -> tuple[int, int]:
    """Foreground intersection and union of two binary masks, leaving out ``ignore`` pixels.

    All arrays must have the same shape; non-zero means foreground (or ignored).
    """
    pred_arr, target_arr = np.asarray(pred), np.asarray(target)
    if pred_arr.shape != target_arr.shape:
        raise InputError(f"prediction shape {pred_arr.shape} differs from target shape {target_arr.shape}")
    pred_fg, target_fg = pred_arr.astype(bool), target_arr.astype(bool)
    if ignore is not None:
        ignore_arr = np.asarray(ignore)
        if ignore_arr.shape != target_arr.shape:
            raise InputError(f"ignore mask shape {ignore_arr.shape} differs from target shape {target_arr.shape}")
        keep = ~ignore_arr.astype(bool)
        pred_fg, target_fg = pred_fg & keep, target_fg & keep
    intersection = int(np.count_nonzero(pred_fg & target_fg))
    union = int(np.count_nonzero(pred_fg | target_fg))
    return intersection, union


def sample_iou(intersection: int, union: int) -> float:
    """LISA's per-sample IoU: ``I / (U + 1e-5)``, and ``1.0`` when the union is empty."""
    if union == 0:
        return 1.0
    return intersection / (union + SAMPLE_EPS)


@dataclass(frozen=True)
class IoURecord:
    """Intersection and union of one sample, with the groups (e.g. ``"short"``) it belongs to."""

    sample_id: str
    intersection: int
    union: int
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.intersection < 0 or self.union < self.intersection:
            raise InputError(
                f"sample {self.sample_id!r}: need 0 <= intersection <= union, got I={self.intersection}, U={self.union}"
            )

    @property
    def iou(self) -> float:
        """This sample's contribution to gIoU."""
        return sample_iou(self.intersection, self.union)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, inverse of :meth:`from_dict`."""
        return {
            "sample_id": self.sample_id,
            "intersection": self.intersection,
            "union": self.union,
            "groups": list(self.groups),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IoURecord:
        """Rebuild a record written by :meth:`to_dict`; raises :class:`InputError` on a bad entry."""
        try:
            return cls(
                sample_id=str(data["sample_id"]),
                intersection=int(data["intersection"]),
                union=int(data["union"]),
                groups=tuple(str(g) for g in data.get("groups", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed IoU record {dict(data)!r}: {exc}") from exc


@dataclass(frozen=True)
class GroupScore:
    """gIoU / cIoU of one group of samples (``count`` samples, summed I and U)."""

    giou: float
    ciou: float
    count: int
    intersection: int
    union: int


def score(records: Sequence[IoURecord]) -> GroupScore:
    """gIoU and cIoU over ``records`` (both 0.0 for an empty sequence)."""
    if not records:
        return GroupScore(giou=0.0, ciou=0.0, count=0, intersection=0, union=0)
    total_i = sum(r.intersection for r in records)
    total_u = sum(r.union for r in records)
    giou = float(np.mean([r.iou for r in records]))
    return GroupScore(
        giou=giou,
        ciou=total_i / (total_u + CUMULATIVE_EPS),
        count=len(records),
        intersection=total_i,
        union=total_u,
    )


@dataclass
class IoUAccumulator:
    """Collects per-sample intersection/union and reports gIoU/cIoU overall and per group.

    Every record counts in the ``"all"`` group plus the groups it names. Sample ids must be unique,
    so re-feeding a sample after a restart is caught instead of counted twice.
    """

    _records: dict[str, IoURecord] = field(default_factory=dict)

    def add(
        self,
        sample_id: str,
        pred: np.ndarray,
        target: np.ndarray,
        ignore: np.ndarray | None = None,
        groups: Iterable[str] = (),
    ) -> IoURecord:
        """Score one prediction against its target (and ignore mask) and store the result."""
        intersection, union = intersection_and_union(pred, target, ignore)
        return self.add_counts(sample_id, intersection, union, groups)

    def add_counts(self, sample_id: str, intersection: int, union: int, groups: Iterable[str] = ()) -> IoURecord:
        """Store already computed intersection and union for one sample."""
        return self.add_record(IoURecord(sample_id, int(intersection), int(union), tuple(groups)))

    def add_record(self, record: IoURecord) -> IoURecord:
        """Store a record; raises :class:`InputError` if its sample id was already added."""
        if record.sample_id in self._records:
            raise InputError(f"sample {record.sample_id!r} was already scored")
        self._records[record.sample_id] = record
        return record

    @classmethod
    def from_records(cls, records: Iterable[IoURecord | Mapping[str, Any]]) -> IoUAccumulator:
        """Rebuild an accumulator from stored records (objects or their ``to_dict`` form)."""
        acc = cls()
        for item in records:
            acc.add_record(item if isinstance(item, IoURecord) else IoURecord.from_dict(item))
        return acc

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in self._records

    @property
    def records(self) -> list[IoURecord]:
        """Records in the order they were added."""
        return list(self._records.values())

    def group_names(self) -> list[str]:
        """``"all"`` followed by every other group name, in first-seen order."""
        names = [ALL_GROUP]
        for record in self._records.values():
            names.extend(g for g in record.groups if g not in names)
        return names

    def summary(self) -> dict[str, GroupScore]:
        """Scores of ``"all"`` and of every group seen so far."""
        out: dict[str, GroupScore] = {}
        for name in self.group_names():
            members = [r for r in self._records.values() if name == ALL_GROUP or name in r.groups]
            out[name] = score(members)
        return out
