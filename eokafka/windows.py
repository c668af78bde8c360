"""Event-time windows: what a window is, which windows a record falls in, when they close.

Pure functions over one key's state; the DSL (``eokafka.dsl.windowed``) keeps that state in a
changelogged window store and emits what these functions return. Nothing here knows Kafka.

Conventions (the same as Kafka Streams where it has them):

* Times are epoch milliseconds. A record's timestamp must be >= 0.
* Tumbling and hopping windows are ``[start, end)`` with ``end = start + size``, their starts
  aligned to the epoch. Sliding and session windows are ``[start, end]``, both ends included.
* No window starts before the epoch: a hopping window that would is not one of the record's
  windows (Kafka Streams' ``TimeWindows.windowsFor``), and a sliding record earlier than
  ``size`` has ``[0, size]`` as its left window (Kafka Streams' early-record path).
* Stream time is the largest timestamp seen (per input partition). A window *closes* once
  stream time reaches :meth:`Windows.close_at`: its aggregate is final, and it is removed.
* A record is *late* when a window it belongs to has closed. Late records are applied to no
  window at all, so a window's content is exactly the non-late records that fall in it. (Kafka
  Streams still adds a hopping record to the windows that are open; here the record is whole
  or nowhere, which is what a dead-letter copy needs.)
"""

from __future__ import annotations

import bisect
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from eokafka.serdes import Serde, SerdeError

__all__ = [
    "NO_AGGREGATE",
    "REMOVED",
    "Aggregator",
    "Hopping",
    "KeyState",
    "Session",
    "Sliding",
    "Tumbling",
    "Windowed",
    "WindowedSerde",
    "Windows",
    "decode_state",
    "encode_state",
]


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NO_AGGREGATE: Final[Any] = _Sentinel("NO_AGGREGATE")  # a window no record reached yet
REMOVED: Final[Any] = _Sentinel("REMOVED")  # a session merged into another one
_NEVER: Final = -(2**63)  # the lowest int64: "before any time"
_BIG = struct.Struct(">q")
_BOUNDS = struct.Struct(">qq")
_ENTRY = struct.Struct(">qqI")
_FIRST = struct.Struct(">qqqI")  # the mark and one entry header
_NULL_LEN: Final = 0xFFFFFFFF


class Windowed(NamedTuple):
    """The key of a windowed aggregate: the grouping key and its window's bounds (ms)."""

    key: Any
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Aggregator:
    """How values fold into an aggregate. ``add(key, value, agg)`` gets NO_AGGREGATE first.

    ``merge(key, a, b)`` joins two session aggregates (None: the aggregation can't do
    sessions); ``result(agg)`` is what gets emitted (e.g. a mean from its sum and count).
    ``pure`` says ``add`` and ``merge`` build new aggregates without changing their inputs,
    and ``result`` hands out nothing that stays in the state (count and mean; not promised
    by user functions, nor by sum/min/max, whose result is the aggregate object itself):
    only then may a decoded window state be reused for the next record of its key.
    """

    add: Callable[[Any, Any, Any], Any]
    merge: Callable[[Any, Any, Any], Any] | None = None
    result: Callable[[Any], Any] = lambda agg: agg
    pure: bool = False

    def fold(self, key: Any, values: Iterable[Any]) -> Any:
        agg = NO_AGGREGATE
        for value in values:
            agg = self.add(key, value, agg)
        return agg


@dataclass(slots=True)
class KeyState:
    """One key's open windows: ``[start, end, aggregate]`` sorted by start.

    Sliding windows keep the key's records instead, ``[timestamp, 0, value]`` in arrival
    order, and ``mark``: windows ending at or before it are closed.
    """

    entries: list[list[Any]] = field(default_factory=list)
    mark: int = _NEVER


Change = tuple[int, int, Any]  # (start, end, aggregate, or REMOVED for a merged-away session)
Closed = tuple[int, int, Any]  # (start, end, final aggregate)


def _check_ms(what: str, value: int, minimum: int) -> int:
    if type(value) is not int or value < minimum:
        raise ValueError(f"{what} must be an int >= {minimum} (milliseconds), not {value!r}")
    return value


class Windows(ABC):
    """A window definition; subclasses say which windows a record opens, updates and closes."""

    grace_ms: int

    @property
    @abstractmethod
    def horizon_ms(self) -> int:
        """How long (event time) after a key's last update its state may still be needed."""

    @abstractmethod
    def is_late(self, ts: int, stream_time: int) -> bool:
        """True if a window the record at ``ts`` falls in has closed at ``stream_time``."""

    @abstractmethod
    def add(
        self, state: KeyState, key: Any, ts: int, value: Any, agg: Aggregator, changes: bool
    ) -> list[Change]:
        """Apply a non-late record to ``state`` in place; with ``changes``, return the
        windows it changed and their new aggregates (else an empty list)."""

    @abstractmethod
    def close(
        self, state: KeyState, key: Any, stream_time: int, agg: Aggregator
    ) -> list[Closed] | None:
        """Remove the windows closed at ``stream_time`` from ``state`` and return them with
        their final aggregates, in order of end; None if ``state`` did not change."""

    @abstractmethod
    def next_close(self, state: KeyState) -> int | None:
        """The stream time at which the key's next window closes; None if none is open."""


class Hopping(Windows):
    """Windows of ``size_ms`` starting every ``advance_ms``: a record is in size/advance of them.

    A window ``[start, start + size)`` closes when stream time reaches ``end + grace_ms``.
    """

    def __init__(self, size_ms: int, advance_ms: int, grace_ms: int = 0) -> None:
        self.size_ms = _check_ms("size_ms", size_ms, 1)
        self.advance_ms = _check_ms("advance_ms", advance_ms, 1)
        self.grace_ms = _check_ms("grace_ms", grace_ms, 0)
        if advance_ms > size_ms:
            raise ValueError(f"advance_ms ({advance_ms}) must not exceed size_ms ({size_ms})")

    def __repr__(self) -> str:
        return (
            f"Hopping(size_ms={self.size_ms}, advance_ms={self.advance_ms}, "
            f"grace_ms={self.grace_ms})"
        )

    @property
    def horizon_ms(self) -> int:
        return self.size_ms + self.grace_ms

    def _first_start(self, ts: int) -> int:
        """The start of the earliest window holding ``ts``: the lowest aligned start above
        ``ts - size``, and never before the epoch."""
        advance = self.advance_ms
        return max((ts - self.size_ms) // advance * advance + advance, 0)

    def windows_for(self, ts: int) -> list[tuple[int, int]]:
        """The windows holding ``ts``, earliest first."""
        size = self.size_ms
        return [(s, s + size) for s in range(self._first_start(ts), ts + 1, self.advance_ms)]

    def is_late(self, ts: int, stream_time: int) -> bool:
        return self._first_start(ts) + self.size_ms + self.grace_ms <= stream_time

    def add(
        self, state: KeyState, key: Any, ts: int, value: Any, agg: Aggregator, changes: bool
    ) -> list[Change]:
        entries = state.entries
        out: list[Change] = []
        added = False
        for start, end in self.windows_for(ts):
            entry = next((e for e in entries if e[0] == start), None)
            if entry is None:
                entry = [start, end, NO_AGGREGATE]
                entries.append(entry)
                added = True
            entry[2] = agg.add(key, value, entry[2])
            if changes:
                out.append((start, end, entry[2]))
        if added:
            entries.sort(key=_start)
        return out

    def close(
        self, state: KeyState, key: Any, stream_time: int, agg: Aggregator
    ) -> list[Closed] | None:
        cutoff = stream_time - self.grace_ms  # windows ending at or before it are closed
        done = [(s, e, a) for s, e, a in state.entries if e <= cutoff]
        if not done:
            return None
        state.entries = [entry for entry in state.entries if entry[1] > cutoff]
        return done

    def next_close(self, state: KeyState) -> int | None:
        entries = state.entries
        if not entries:
            return None
        # Windows of one size sorted by start are sorted by end too: the first ends first.
        return entries[0][1] + self.grace_ms  # type: ignore[no-any-return]


class Tumbling(Hopping):
    """Back-to-back windows of ``size_ms``: every record is in exactly one."""

    def __init__(self, size_ms: int, grace_ms: int = 0) -> None:
        super().__init__(size_ms, size_ms, grace_ms)

    def is_late(self, ts: int, stream_time: int) -> bool:
        return ts - ts % self.size_ms + self.size_ms + self.grace_ms <= stream_time

    def add(
        self, state: KeyState, key: Any, ts: int, value: Any, agg: Aggregator, changes: bool
    ) -> list[Change]:
        """Hopping.add with its one window found without building the list of windows."""
        size = self.size_ms
        start = ts - ts % size
        entries = state.entries
        for entry in entries:
            if entry[0] == start:
                break
        else:
            entry = [start, start + size, NO_AGGREGATE]
            entries.append(entry)
            if len(entries) > 1:
                entries.sort(key=_start)
        entry[2] = aggregate = agg.add(key, value, entry[2])
        return [(start, start + size, aggregate)] if changes else []

    def __repr__(self) -> str:
        return f"Tumbling(size_ms={self.size_ms}, grace_ms={self.grace_ms})"


class _RecordBound(Windows):
    """Windows whose bounds are record times (sessions, sliding): a record is late when it is
    more than ``grace_ms`` behind stream time, so every window it can touch is still open."""

    def is_late(self, ts: int, stream_time: int) -> bool:
        return ts + self.grace_ms < stream_time


class Session(_RecordBound):
    """Records of a key at most ``gap_ms`` apart share a session ``[first, last]``.

    Records exactly ``gap_ms`` apart are in one session, as in Kafka Streams. A record at most
    ``gap_ms`` from several sessions merges them. A session closes when stream time passes
    ``end + gap_ms + grace_ms``: only then can no accepted record join it. A
    record is late when it is more than ``grace_ms`` behind stream time.
    """

    def __init__(self, gap_ms: int, grace_ms: int = 0) -> None:
        self.gap_ms = _check_ms("gap_ms", gap_ms, 0)
        self.grace_ms = _check_ms("grace_ms", grace_ms, 0)

    def __repr__(self) -> str:
        return f"Session(gap_ms={self.gap_ms}, grace_ms={self.grace_ms})"

    @property
    def horizon_ms(self) -> int:
        return self.gap_ms + self.grace_ms + 1

    def add(
        self, state: KeyState, key: Any, ts: int, value: Any, agg: Aggregator, changes: bool
    ) -> list[Change]:
        if agg.merge is None:
            raise TypeError("session windows need an aggregation that can merge (merger=)")
        low, high = ts - self.gap_ms, ts + self.gap_ms
        merged = [e for e in state.entries if e[0] <= high and e[1] >= low]
        start, end, acc = ts, ts, NO_AGGREGATE
        for s, e, a in merged:  # in start order
            start, end = min(start, s), max(end, e)
            acc = a if acc is NO_AGGREGATE else agg.merge(key, acc, a)
        acc = agg.add(key, value, acc)
        out: list[Change] = []
        if changes:
            out = [(s, e, REMOVED) for s, e, _ in merged if (s, e) != (start, end)]
            out.append((start, end, acc))
        kept = [e for e in state.entries if not (e[0] <= high and e[1] >= low)]
        bisect.insort(kept, [start, end, acc], key=_start)
        state.entries = kept
        return out

    def close(
        self, state: KeyState, key: Any, stream_time: int, agg: Aggregator
    ) -> list[Closed] | None:
        cutoff = stream_time - self.gap_ms - self.grace_ms  # sessions ending before it closed
        done = [(s, e, a) for s, e, a in state.entries if e < cutoff]
        if not done:
            return None
        state.entries = [entry for entry in state.entries if entry[1] >= cutoff]
        return done

    def next_close(self, state: KeyState) -> int | None:
        if not state.entries:
            return None
        return min(e[1] for e in state.entries) + self.gap_ms + self.grace_ms + 1


class Sliding(_RecordBound):
    """Every distinct set of a key's records at most ``size_ms`` apart, as Kafka Streams does.

    The windows are ``[t - size, t]`` for each record timestamp t (``[0, size]`` for t below
    ``size``: no window starts before the epoch), and ``[t + 1, t + 1 + size]`` for each t
    with a record after it in that span. A window closes when stream time passes
    ``end + grace_ms``; a record is late when it is more than ``grace_ms`` behind stream time.
    The key's records of the last ``size + grace`` ms are kept and folded per window, so an
    update costs O(records in reach) per window it touches.
    """

    def __init__(self, size_ms: int, grace_ms: int = 0) -> None:
        self.size_ms = _check_ms("size_ms", size_ms, 0)
        self.grace_ms = _check_ms("grace_ms", grace_ms, 0)

    def __repr__(self) -> str:
        return f"Sliding(size_ms={self.size_ms}, grace_ms={self.grace_ms})"

    @property
    def horizon_ms(self) -> int:
        return self.size_ms + self.grace_ms + 1

    def windows(self, timestamps: Iterable[int]) -> list[tuple[int, int]]:
        """Every window of these record timestamps, in order of end then start."""
        times = sorted(set(timestamps))
        size = self.size_ms
        found = {(t - size, t) if t >= size else (0, size) for t in times}
        for i, t in enumerate(times[:-1]):
            if times[i + 1] <= t + 1 + size:  # a later record is in the right window
                found.add((t + 1, t + 1 + size))
        return sorted(found, key=lambda w: (w[1], w[0]))

    def _aggregate(self, state: KeyState, key: Any, start: int, end: int, agg: Aggregator) -> Any:
        return agg.fold(key, (e[2] for e in state.entries if start <= e[0] <= end))

    def add(
        self, state: KeyState, key: Any, ts: int, value: Any, agg: Aggregator, changes: bool
    ) -> list[Change]:
        state.entries.append([ts, 0, value])
        if not changes:
            return []
        return [
            (s, e, self._aggregate(state, key, s, e, agg))
            for s, e in self.windows(e[0] for e in state.entries)
            if s <= ts <= e or s == ts + 1  # holding the record, or its new right window
        ]

    def close(
        self, state: KeyState, key: Any, stream_time: int, agg: Aggregator
    ) -> list[Closed] | None:
        cutoff = stream_time - self.grace_ms - 1  # windows ending at or before it are closed
        if cutoff <= state.mark:
            return None
        done = [
            (s, e, self._aggregate(state, key, s, e, agg))
            for s, e in self.windows(e[0] for e in state.entries)
            if state.mark < e <= cutoff
        ]
        state.mark = cutoff
        # A window still open ends after cutoff, so it starts after cutoff - size - 1.
        keep_from = cutoff - self.size_ms
        state.entries = [e for e in state.entries if e[0] >= keep_from]
        return done

    def next_close(self, state: KeyState) -> int | None:
        """The next window's close; without one, when the records are out of every future
        window's reach (a record at t is in none ending after t + 1 + size)."""
        if not state.entries:
            return None
        ends = [e for _, e in self.windows(e[0] for e in state.entries) if e > state.mark]
        if not ends:
            ends = [max(e[0] for e in state.entries) + self.size_ms + 1]
        return min(ends) + self.grace_ms + 1


def _start(entry: list[Any]) -> int:
    return entry[0]  # type: ignore[no-any-return]


# -- aggregations (what the DSL offers; each can merge sessions unless said) ----------------


def _identity(value: Any) -> Any:
    return value


def counting() -> Aggregator:
    return Aggregator(
        add=lambda key, value, agg: 1 if agg is NO_AGGREGATE else agg + 1,
        merge=lambda key, a, b: a + b,
        pure=True,
    )


def summing(fn: Callable[[Any], Any] | None = None) -> Aggregator:
    f = fn or _identity
    return Aggregator(
        add=lambda key, value, agg: f(value) if agg is NO_AGGREGATE else agg + f(value),
        merge=lambda key, a, b: a + b,
    )


def picking(pick: Callable[[Any, Any], Any], fn: Callable[[Any], Any] | None = None) -> Aggregator:
    """min or max (``pick``) of ``fn(value)``."""
    f = fn or _identity
    return Aggregator(
        add=lambda key, value, agg: f(value) if agg is NO_AGGREGATE else pick(agg, f(value)),
        merge=lambda key, a, b: pick(a, b),
    )


def averaging(fn: Callable[[Any], Any] | None = None) -> Aggregator:
    """Keeps ``[sum, count]`` (JSON-friendly), emits the mean."""
    f = fn or _identity

    def add(key: Any, value: Any, agg: Any) -> list[Any]:
        total, n = (0, 0) if agg is NO_AGGREGATE else agg
        return [total + f(value), n + 1]

    return Aggregator(
        add=add,
        merge=lambda key, a, b: [a[0] + b[0], a[1] + b[1]],
        result=lambda agg: agg[0] / agg[1],
        pure=True,
    )


def reducing(reducer: Callable[[Any, Any], Any]) -> Aggregator:
    """Sessions merge with ``reducer(a, b)``: right when the reducer is associative."""
    return Aggregator(
        add=lambda key, value, agg: value if agg is NO_AGGREGATE else reducer(agg, value),
        merge=lambda key, a, b: reducer(a, b),
    )


def aggregating(
    initializer: Callable[[], Any],
    aggregator: Callable[[Any, Any, Any], Any],
    merger: Callable[[Any, Any, Any], Any] | None = None,
) -> Aggregator:
    """``aggregator(key, value, agg)`` from ``initializer()``; sessions need ``merger``."""
    return Aggregator(
        add=lambda key, value, agg: aggregator(
            key, value, initializer() if agg is NO_AGGREGATE else agg
        ),
        merge=merger,
    )


# -- serialization ------------------------------------------------------------------------


def encode_state(state: KeyState, serialize: Callable[[Any], bytes | None]) -> bytes:
    """``mark`` (int64) then per entry: int64, int64, uint32 length, payload (big-endian).

    The payload is the aggregate (or the record's value, for sliding windows) written by
    the store's value serde; a None payload has length 0xFFFFFFFF.
    """
    entries = state.entries
    if len(entries) == 1:  # the common case, tumbling windows: one pack, one join
        a, b, payload = entries[0]
        data = serialize(payload)
        if data is None:
            return _FIRST.pack(state.mark, a, b, _NULL_LEN)
        return _FIRST.pack(state.mark, a, b, len(data)) + data
    parts = [_BIG.pack(state.mark)]
    for a, b, payload in entries:
        data = serialize(payload)
        if data is None:
            parts.append(_ENTRY.pack(a, b, _NULL_LEN))
        else:
            parts.append(_ENTRY.pack(a, b, len(data)))
            parts.append(data)
    return b"".join(parts)


def decode_state(data: bytes, deserialize: Callable[[bytes | None], Any]) -> KeyState:
    (mark,) = _BIG.unpack_from(data, 0)
    entries: list[list[Any]] = []
    at, end = _BIG.size, len(data)
    while at < end:
        a, b, size = _ENTRY.unpack_from(data, at)
        at += _ENTRY.size
        if size == _NULL_LEN:
            entries.append([a, b, deserialize(None)])
        else:
            entries.append([a, b, deserialize(data[at : at + size])])
            at += size
    return KeyState(entries, mark)


_NO_KEY: Final[Any] = _Sentinel("NO_KEY")
_IMMUTABLE_KEYS: Final = frozenset({str, bytes, int})


class WindowedSerde:
    """Windowed keys on the wire: the inner serde's key bytes, then start and end.

    ``key bytes + 8-byte big-endian signed start + 8-byte big-endian signed end`` (ms).
    Any language reads it: the last 16 bytes are the window, the rest is the key.
    """

    __slots__ = ("inner", "name", "_last")

    def __init__(self, inner: Serde) -> None:
        self.inner = inner
        self.name = f"Windowed({inner.name})"
        # The last str/bytes/int key and its bytes: an update emits one window per record,
        # all with the key the aggregation just serialized, so encode each key once.
        self._last: tuple[Any, bytes] = (_NO_KEY, b"")

    def serialize(self, value: Any) -> bytes | None:
        if value is None:
            return None
        if type(value) is Windowed:
            key, start, end = value
        elif isinstance(value, Windowed):
            key, start, end = value.key, value.start, value.end
        else:
            raise SerdeError(
                self.name, f"{self.name} needs a Windowed key, not {type(value).__qualname__}"
            )
        last = self._last
        if key is last[0]:
            data = last[1]
        else:
            data = self.inner.serialize(key) or b""
            if type(key) in _IMMUTABLE_KEYS:
                self._last = (key, data)
        return data + _BOUNDS.pack(start, end)

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        if len(data) < 16:
            raise SerdeError(self.name, f"{self.name} needs at least 16 bytes, got {len(data)}")
        start, end = struct.unpack_from(">qq", data, len(data) - 16)
        return Windowed(self.inner.deserialize(bytes(data[:-16])), start, end)

    def __repr__(self) -> str:
        return f"WindowedSerde({self.inner!r})"
