"""The store behind a windowed aggregation: one entry per key, and a close index.

Layout (raw bytes; the DSL encodes the payloads, see ``eokafka.windows.encode_state``):

* ``b"\\x01" + key bytes`` -> int64 close time + payload: the key's open windows, and the
  stream time at which the first of them closes.

The stream time is not here: this store's changelog deletes old records by time, so it lives
in a store of its own (``eokafka.state.stream_time``). Every write goes through the overlay
like any store write, so windows and the tombstones of closed windows reach the changelog in
the transaction of the outputs they caused. The close index (a heap of (close time, key)) is
derived state: built from the entries at first use (so after any restore), extended by
writes, drained by :meth:`WindowStore.due`. An abort puts back what ``due`` took, so a
replay closes those windows again.

A cache spares the per-record path work without outliving what it mirrors: for the open
transaction only, the decoded state last written per key (``state``/``put_entry``), valid
while that very write is the key's current value.
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

from eokafka.serdes import Bytes, Json, Serde
from eokafka.state.backend import Backend
from eokafka.state.store import Store, StoreRecordTooLargeError

__all__ = ["WindowStore"]

_KEY: Final = b"\x01"
_INT64 = struct.Struct(">q")
WINDOW_ENTRY: Final = _KEY  # the prefix of a key's entry, for readers of committed bytes
CLOSE_AT_BYTES: Final = _INT64.size  # the close time before an entry's payload
_MISSING: Final[Any] = object()
Item = tuple[int, bytes]  # (close time, key bytes)


class WindowStore(Store):
    """A :class:`Store` of raw bytes with window entries and a close index.

    ``get``/``put``/``items`` work on the raw layout above; the windowed DSL uses the entry
    methods. ``value_serde`` is kept as :attr:`aggregate_serde` for the payloads.
    """

    __slots__ = ("aggregate_serde", "_heap", "_taken", "_decoded")

    def __init__(
        self,
        name: str,
        backend: Backend,
        key_serde: Serde | None = None,
        value_serde: Serde | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, backend, Bytes(), Bytes(), **kwargs)
        self.aggregate_serde: Serde = value_serde or Json()
        self._heap: list[Item] | None = None
        self._taken: list[Item] = []  # popped in the open transaction
        # key bytes -> (the value written, its payload decoded), for this transaction only.
        self._decoded: dict[bytes, tuple[bytes, Any]] = {}

    # -- raw access ---------------------------------------------------------------------------

    def _raw(self, key: bytes) -> bytes | None:
        """Store.get for the raw layout, without the serde steps it does not need."""
        value = self._overlay.get(key, _MISSING)
        if value is _MISSING:
            return self._committed(key)
        return value  # type: ignore[no-any-return]

    def _write(self, key: bytes, data: bytes) -> None:
        """Store.put for the raw layout: the same size check, then the overlay."""
        size = len(key) + len(data)
        if size > self.max_record_bytes:
            raise StoreRecordTooLargeError(self.name, key, size, self.max_record_bytes)
        self._overlay[key] = data

    def put(self, key: Any, value: Any) -> None:
        """A raw write (see the module docstring); it drops the caches."""
        self._forget()
        super().put(key, value)

    def delete(self, key: Any) -> None:
        self._forget()
        super().delete(key)

    def _forget(self) -> None:
        self._decoded.clear()

    # -- entries -----------------------------------------------------------------------------

    def entry(self, key: bytes) -> tuple[int, bytes] | None:
        """(close time, payload) of a key, or None."""
        data = self._raw(_KEY + key)
        if data is None:
            return None
        return _INT64.unpack_from(data)[0], data[_INT64.size :]

    def state(self, key: bytes, decode: Callable[[bytes], Any]) -> tuple[int, Any] | None:
        """(close time, ``decode(payload)``) of a key, or None.

        The object last written with ``put_entry(..., decoded=obj)`` in this transaction
        comes back without decoding if that write is still the key's value. It leaves the
        cache: the caller may change it, and gives it back with its next ``put_entry``.
        """
        data = self._raw(_KEY + key)
        if data is None:
            return None
        close_at: int = _INT64.unpack_from(data)[0]
        if self._decoded:
            hit = self._decoded.pop(key, None)
            if hit is not None and hit[0] is data:
                return close_at, hit[1]
        return close_at, decode(data[_INT64.size :])

    def put_entry(
        self,
        key: bytes,
        close_at: int | None,
        payload: bytes,
        was: int | None = None,
        decoded: Any = None,
    ) -> None:
        """Write a key's windows; ``close_at`` None deletes the entry (a tombstone).

        ``was`` is the close time the entry had: the index only needs a new item when the
        key now closes earlier (a later close is found when the earlier item comes due).
        ``decoded`` (if not None) is what ``payload`` decodes to, kept for :meth:`state`;
        the caller must not change it afterwards.
        """
        cache = self._decoded
        if cache:
            cache.pop(key, None)
        if close_at is None:
            self._overlay[_KEY + key] = None
            return
        data = _INT64.pack(close_at) + payload
        self._write(_KEY + key, data)
        if decoded is not None:
            cache[key] = (data, decoded)
        if was is None or close_at < was:
            heapq.heappush(self._index(), (close_at, key))

    def due(self, stream_time: int) -> list[tuple[bytes, int, bytes]]:
        """The keys with a window closed at ``stream_time``: (key, close time, payload).

        Each key once, in order of close time. Items that turn out early (the key's first
        window now closes later) go back in under the entry's current close time.
        """
        heap = self._heap
        if heap is None:
            heap = self._index()
        if not heap or heap[0][0] > stream_time:
            return []  # the common case: nothing closes at this record
        out: list[tuple[bytes, int, bytes]] = []
        seen: set[bytes] = set()
        later: list[Item] = []
        while heap and heap[0][0] <= stream_time:
            item = heapq.heappop(heap)
            self._taken.append(item)
            key = item[1]
            if key in seen:
                continue
            seen.add(key)
            found = self.entry(key)
            if found is None:
                continue
            if found[0] <= stream_time:
                out.append((key, found[0], found[1]))
            else:
                later.append((found[0], key))
        for item in later:
            heapq.heappush(heap, item)
        return out

    def entries(self) -> Iterator[tuple[bytes, int, bytes]]:
        """Every key's (key bytes, close time, payload), this transaction's writes included."""
        for key, data in self.items():
            if key[:1] == _KEY:
                yield key[1:], _INT64.unpack_from(data)[0], data[_INT64.size :]

    @property
    def index_size(self) -> int:
        """Items in the close index (stale ones included): bounded like the entries."""
        return 0 if self._heap is None else len(self._heap)

    def _index(self) -> list[Item]:
        """Committed entries plus this transaction's: a superset survives commit and abort."""
        if self._heap is None:
            raw: Iterable[tuple[bytes, bytes | None]]
            heap: list[Item] = []
            for raw in (self.backend.items(), self._overlay.items()):
                for key, data in raw:
                    if data is not None and key[:1] == _KEY:
                        heap.append((_INT64.unpack_from(data)[0], key[1:]))
            heapq.heapify(heap)
            self._heap = heap
        return self._heap

    # -- the transaction side ----------------------------------------------------------------

    def commit(self, checkpoint: int | None) -> None:
        super().commit(checkpoint)
        self._taken = []
        self._decoded.clear()  # bounded by the keys of one transaction

    def abort(self) -> None:
        super().abort()
        if self._heap is not None:
            for item in self._taken:
                heapq.heappush(self._heap, item)
        self._taken = []
        self._forget()

    def restore_batch(
        self,
        records: Iterable[tuple[bytes, bytes | None]],
        next_offset: int,
        *,
        flush: bool = True,
    ) -> None:
        super().restore_batch(records, next_offset, flush=flush)
        self._heap = None  # rebuilt from the restored entries at first use
        self._taken = []
        self._forget()

    def close(self) -> None:
        super().close()
        self._heap = None
        self._taken = []
        self._forget()

    def destroy(self) -> None:
        super().destroy()
        self._heap = None
        self._taken = []
        self._forget()
