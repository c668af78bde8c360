"""The stream time of a windowed aggregation, in a store of its own.

Stream time is the largest event time the aggregation has seen on a partition; a record is
late by it, so it must never go back, also across restores. The window store's changelog is
``compact,delete``: the broker deletes records older than its retention, whether compaction
would keep them or not. A stream time that has not moved for longer than that (a partition
left idle, or all of whose records came late) would be deleted with them, and after a
restore a late record could re-open a window whose final result went out already. So the
stream time lives here, one key per partition, in a changelog that is compacted only:
compaction keeps the last record of every key, so it is kept for as long as the changelog.

Kafka Streams keeps such times out of reach of changelog retention too: the partition time
and the last emitted window close go into the committed offsets' metadata.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from eokafka.serdes import Bytes, Serde
from eokafka.state.backend import Backend
from eokafka.state.store import Store

__all__ = ["StreamTimeStore", "stream_time_store"]

_KEY: Final = b"t"
_INT64 = struct.Struct(">q")
_UNKNOWN: Final[Any] = object()  # not cached


def stream_time_store(window_store: str) -> str:
    """The name of the store that keeps the stream time of ``window_store``."""
    return f"{window_store}-stream-time"


class StreamTimeStore(Store):
    """One int64 (big-endian) under one key; the value is cached as an int until an abort,
    a restore or a raw write could have changed it."""

    __slots__ = ("_time", "idle_base")

    def __init__(
        self,
        name: str,
        backend: Backend,
        key_serde: Serde | None = None,
        value_serde: Serde | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, backend, Bytes(), Bytes(), **kwargs)
        self._time: Any = _UNKNOWN
        # Closing windows or releasing waiting join records on idle: (wall-clock ms of the
        # partition's last record, the stream time then), in memory.
        self.idle_base: tuple[int, int] | None = None

    def stream_time(self) -> int | None:
        """The stream time, this transaction's advance included; None before any record."""
        stream_time = self._time
        if stream_time is _UNKNOWN:
            data = self.get(_KEY)
            stream_time = None if data is None else _INT64.unpack(data)[0]
            self._time = stream_time
        return stream_time  # type: ignore[no-any-return]

    def idle_target(self, active_ms: int, now_ms: int) -> int | None:
        """The stream time a partition idle since wall-clock ``active_ms`` has at ``now_ms``:
        the stream time when it went idle plus the wall-clock time since; None when that is
        not past the current stream time (or no record was seen yet).

        It counts from the stream time when the partition went idle, so an aborted advance
        is made again, whole, at the next check."""
        base = self.idle_base
        if base is None or base[0] != active_ms:
            current = self.stream_time()
            if current is None:
                return None
            base = self.idle_base = (active_ms, current)
        target = base[1] + (now_ms - active_ms)
        current = self.stream_time()
        return None if current is not None and target <= current else target

    def set_stream_time(self, stream_time: int) -> None:
        self._overlay[_KEY] = _INT64.pack(stream_time)  # 9 bytes: no record size to check
        self._time = stream_time

    def committed_stream_time(self) -> int | None:
        """The stream time Kafka committed (the open transaction's advance left out), for
        readers outside the task; None before any record."""
        data = self.backend.get(_KEY)
        return None if data is None else _INT64.unpack(data)[0]  # type: ignore[no-any-return]

    def put(self, key: Any, value: Any) -> None:
        self._time = _UNKNOWN
        super().put(key, value)

    def delete(self, key: Any) -> None:
        self._time = _UNKNOWN
        super().delete(key)

    def _derived_reset(self) -> None:
        self._time = _UNKNOWN
