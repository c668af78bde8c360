"""A bounded cache of committed values in front of a persistent backend's reads.

An aggregation reads every key it writes, and a RocksDB read through rocksdict costs about
half a microsecond, several times a dict lookup. The cache belongs to its backend and is kept
right by it alone: the backend changes only in ``apply`` (commits and restore batches alike),
which mirrors a successful write here and forgets everything after a failed one, and in
``close``/``destroy``, which forget everything. A hit is one C-level dict lookup; the bound is
an estimate of the bytes held, past which the cache starts over empty.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

__all__ = ["DEFAULT_READ_CACHE_BYTES", "DICT_ENTRY_BYTES", "CommittedReads", "pair_bytes"]

DEFAULT_READ_CACHE_BYTES: Final = 4 * 1024 * 1024
# Rough per-entry overhead of a dict slot plus two bytes objects, for memory estimates.
DICT_ENTRY_BYTES: Final = 100


def pair_bytes(writes: Mapping[bytes, bytes | None]) -> int:
    """Key and value bytes of a batch (None values count 0), summed in C."""
    return sum(map(len, writes)) + sum(map(len, filter(None, writes.values())))


class CommittedReads(dict[bytes, bytes | None]):
    """Committed value per key, read through from ``read`` on a miss (absence kept as None).

    ``self[key]`` (its ``__getitem__``) is the read: a hit never leaves C. The size estimate
    counts a rewritten key again, so the cache may start over sooner than needed, never later.
    """

    __slots__ = ("_read", "_limit", "_bytes")

    def __init__(
        self, read: Callable[[bytes], bytes | None], limit_bytes: int = DEFAULT_READ_CACHE_BYTES
    ) -> None:
        super().__init__()
        self._read = read
        self._limit = limit_bytes
        self._bytes = 0

    def __missing__(self, key: bytes) -> bytes | None:
        value = self._read(key)
        self._bytes += len(key) + (0 if value is None else len(value)) + DICT_ENTRY_BYTES
        if self._bytes > self._limit:
            self.forget()
        else:
            self[key] = value
        return value

    def wrote(self, writes: Mapping[bytes, bytes | None]) -> None:
        """The backend applied ``writes`` (None deletes): mirror them, within the bound."""
        if not writes:
            return
        size = pair_bytes(writes) + DICT_ENTRY_BYTES * len(writes)
        if self._bytes + size > self._limit:
            self.forget()
            if size > self._limit:
                return  # a large restore batch: read its keys back as they are used
        self.update(writes)
        self._bytes += size

    def forget(self) -> None:
        """Drop every entry: the backend may have changed in a way not mirrored here."""
        self.clear()
        self._bytes = 0
