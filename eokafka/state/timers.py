"""The store of a processor's timers: its stream time, its per-key timers, its fired one-shots.

Layout (raw bytes, one store per task, changelogged like every store):

* ``b"s"`` -> int64: the processor's stream time on this task (the largest record timestamp
  it has seen); stream-time timers fire as it passes them, so it must survive restores.
* ``b"k" + key bytes`` -> kind byte (``s`` stream time, ``w`` wall clock) + int64 time: the
  key's timer (one per key; setting it again moves it).
* ``b"o" + name`` -> int64: the one-shot timer ``name`` fired at that time.

Every write goes through the overlay, so a timer's firing (its key deleted, its one-shot
marked) is in the transaction of its outputs: an abort puts it back and the replay fires it
again, once. The due index (a heap per kind) is derived state, rebuilt from the entries after
an abort or a restore and extended by writes.

What the processor's ``init`` registered (its recurring schedules and one-shots) lives on the
instance too, in memory: it is code, not data, and runs again whenever the task opens.
"""

from __future__ import annotations

import heapq
import struct
from typing import Any, Final

from eokafka.serdes import Bytes, Serde
from eokafka.state.backend import Backend
from eokafka.state.store import Store

__all__ = ["TimerStore", "timer_store"]

_TIME: Final = b"s"
_KEY: Final = b"k"
_ONCE: Final = b"o"
_INT64 = struct.Struct(">q")
KINDS: Final = {"stream-time": b"s", "wall-clock": b"w"}
Item = tuple[int, bytes]  # (time, key bytes)


def timer_store(processor: str) -> str:
    """The name of the store that keeps the timers of ``processor``."""
    return f"{processor}-timers"


class TimerStore(Store):
    """A :class:`Store` of raw bytes with the layout above and a due index per kind."""

    __slots__ = ("registered", "_heaps")

    def __init__(
        self,
        name: str,
        backend: Backend,
        key_serde: Serde | None = None,
        value_serde: Serde | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, backend, Bytes(), Bytes(), **kwargs)
        # What init registered on this instance (eokafka.timers.Registered); None: not run.
        self.registered: object | None = None
        self._heaps: dict[bytes, list[Item]] | None = None

    def _raw(self, key: bytes) -> bytes | None:
        value = self._overlay.get(key, self)
        if value is self:
            return self._committed(key)
        return value  # type: ignore[return-value]

    # -- stream time -----------------------------------------------------------------------

    def stream_time(self) -> int | None:
        data = self._raw(_TIME)
        return None if data is None else _INT64.unpack(data)[0]

    def set_stream_time(self, stream_time: int) -> None:
        self._overlay[_TIME] = _INT64.pack(stream_time)

    # -- one-shot markers ------------------------------------------------------------------

    def fired_once(self, name: str) -> int | None:
        """The time the one-shot ``name`` fired at, or None."""
        data = self._raw(_ONCE + name.encode())
        return None if data is None else _INT64.unpack(data)[0]

    def mark_fired(self, name: str, at: int) -> None:
        self._overlay[_ONCE + name.encode()] = _INT64.pack(at)

    # -- per-key timers --------------------------------------------------------------------

    def timer(self, key: bytes) -> tuple[str, int] | None:
        """(kind, time) of the key's timer, or None."""
        data = self._raw(_KEY + key)
        if data is None:
            return None
        kind = "stream-time" if data[:1] == b"s" else "wall-clock"
        return kind, _INT64.unpack_from(data, 1)[0]

    def set_timer(self, key: bytes, kind: str, at: int) -> None:
        code = KINDS[kind]
        self._overlay[_KEY + key] = code + _INT64.pack(at)
        heapq.heappush(self._index()[code], (at, key))

    def cancel_timer(self, key: bytes) -> None:
        self._overlay[_KEY + key] = None

    def due(self, kind: str, now: int) -> list[Item]:
        """The keys whose ``kind`` timer is at or before ``now``: (time, key), in order of
        time then key. Taken from the index; the caller fires them and deletes them."""
        code = KINDS[kind]
        heap = self._index()[code]
        out: list[Item] = []
        while heap and heap[0][0] <= now:
            at, key = heapq.heappop(heap)
            data = self._raw(_KEY + key)
            if data is None or data[:1] != code or _INT64.unpack_from(data, 1)[0] != at:
                continue  # cancelled or moved: a stale index item
            if out and out[-1] == (at, key):
                continue
            out.append((at, key))
        return out

    def next_due(self, kind: str) -> int | None:
        """The earliest ``kind`` timer time in the index (maybe stale), or None."""
        heap = self._index()[KINDS[kind]]
        return heap[0][0] if heap else None

    def _index(self) -> dict[bytes, list[Item]]:
        if self._heaps is None:
            heaps: dict[bytes, list[Item]] = {code: [] for code in KINDS.values()}
            merged = dict(self.backend.items())
            merged.update(self._overlay)
            for key, data in merged.items():
                if data is not None and key[:1] == _KEY:
                    heaps[data[:1]].append((_INT64.unpack_from(data, 1)[0], key[1:]))
            for heap in heaps.values():
                heapq.heapify(heap)
            self._heaps = heaps
        return self._heaps

    def _derived_reset(self) -> None:
        """After an abort, a restore, a close: the index is rebuilt from the entries (items
        an aborted firing took come back), and init runs again on a reopened store."""
        self._heaps = None

    def close(self) -> None:
        super().close()
        self.registered = None

    def destroy(self) -> None:
        super().destroy()
        self.registered = None
