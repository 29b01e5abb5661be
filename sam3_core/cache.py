"""A least-recently-used cache of image encodings, bounded by the bytes its tensors hold."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch

V = TypeVar("V")


@dataclass
class CacheStats:
    """Counters of a :class:`FeatureCache`; ``bytes`` is what the stored tensors occupy now."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    entries: int = 0
    bytes: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def tensor_bytes(value: object) -> int:
    """Bytes held by the tensors reachable from ``value`` (tensors, dataclass-like objects, containers).

    Tensors that share storage (views made with ``expand``) are counted once.
    """
    seen: set[int] = set()
    return _walk_bytes(value, seen)


def _walk_bytes(value: object, seen: set[int]) -> int:
    if isinstance(value, torch.Tensor):
        storage = value.untyped_storage()
        if storage.data_ptr() in seen:
            return 0
        seen.add(storage.data_ptr())
        return storage.nbytes()
    if isinstance(value, dict):
        return sum(_walk_bytes(item, seen) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_walk_bytes(item, seen) for item in value)
    if hasattr(value, "__dict__"):
        return sum(_walk_bytes(item, seen) for item in vars(value).values())
    return 0


class FeatureCache(Generic[V]):
    """Thread-safe LRU mapping from an image key to its encoding, holding at most ``max_bytes``.

    An entry larger than the whole budget is not stored (it would only evict everything else).
    ``max_bytes=0`` disables caching while still counting misses.
    """

    def __init__(self, max_bytes: int, size_of: Callable[[V], int] = tensor_bytes) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._entries: OrderedDict[str, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._stats = CacheStats()

    def get(self, key: str) -> V | None:
        """The cached value for ``key`` (counted as a hit) or None (counted as a miss)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._stats.misses += 1
                return None
            self._entries.move_to_end(key)
            self._stats.hits += 1
            return entry[0]

    def peek(self, key: str) -> V | None:
        """Like :meth:`get` but neither counts nor refreshes the entry."""
        with self._lock:
            entry = self._entries.get(key)
            return None if entry is None else entry[0]

    def put(self, key: str, value: V) -> None:
        """Store ``value``, evicting least recently used entries until the budget holds."""
        size = self._size_of(value)
        with self._lock:
            if key in self._entries:
                self._stats.bytes -= self._entries.pop(key)[1]
            if size > self.max_bytes:
                return
            while self._entries and self._stats.bytes + size > self.max_bytes:
                _, (_, evicted_size) = self._entries.popitem(last=False)
                self._stats.bytes -= evicted_size
                self._stats.evictions += 1
            self._entries[key] = (value, size)
            self._stats.bytes += size

    def keys(self) -> Iterable[str]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._stats.bytes = 0

    def stats(self) -> CacheStats:
        """A snapshot of the counters."""
        with self._lock:
            return CacheStats(
                hits=self._stats.hits,
                misses=self._stats.misses,
                evictions=self._stats.evictions,
                entries=len(self._entries),
                bytes=self._stats.bytes,
            )

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
