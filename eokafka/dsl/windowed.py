"""The per-record work of windowed aggregations (``group_by...().window(w).count()/...``,
declared by ``WindowedStream`` in ``windowed_stream.py``) on a window store, and the checks of what
they are declared with.

Per record, inside the open transaction: read the partition's stream time (from the store
beside the window store that keeps it where changelog retention can't delete it, see
``eokafka.state.stream_time``), advance it, drop or dead-letter the record if its window has
closed, else update the key's windows. When stream time moved, close every window it
passed: emit its final result (``emit="final"``) and delete it (tombstone). Stream time,
windows, tombstones and outputs are all in the one transaction, so a worker killed after
closing a window and before the commit leaves nothing behind, and the replay closes the same
window again, once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

from eokafka import windows as w
from eokafka.dsl.graph import Emit, Root, TimestampFn, check_timestamp
from eokafka.dsl.late import LateNote
from eokafka.errors import EokafkaError, TopologyError
from eokafka.record import Record, dead_letter_headers
from eokafka.state import StreamTimeStore, WindowStore, stream_time_store
from eokafka.windows import (
    REMOVED,
    Aggregator,
    KeyState,
    Windowed,
    Windows,
    decode_state,
    encode_state,
)

Late = Literal["drop", "dead-letter"]
EmitMode = Literal["update", "final"]
DEFAULT_RETENTION_MARGIN_MS = 24 * 3600 * 1000  # as Kafka Streams' changelog margin


def window_retention(windows: Windows, late: Late, retention_ms: int | None) -> int:
    """Check ``window()``'s arguments; the window store changelog's retention (ms)."""
    if not isinstance(windows, Windows):
        raise TopologyError(f"window() takes an eokafka.windows definition, not {windows!r}")
    if late not in get_args(Late):
        raise TopologyError(f"late must be one of {get_args(Late)}, not {late!r}")
    if retention_ms is not None and (type(retention_ms) is not int or retention_ms <= 0):
        raise TopologyError(f"retention_ms must be a positive int, not {retention_ms!r}")
    return retention_ms or windows.horizon_ms + DEFAULT_RETENTION_MARGIN_MS


def check_emit(label: str, name: str, emit: EmitMode) -> None:
    """Refuse an ``emit=`` other than "update" or "final", naming the aggregation."""
    if emit not in get_args(EmitMode):
        raise TopologyError(f"{label}({name!r}): emit must be 'update' or 'final', not {emit!r}")


def check_idle(close_on_idle_ms: int | None) -> None:
    """``close_on_idle_ms`` is None (windows close with data only) or a positive int."""
    if close_on_idle_ms is not None and (
        type(close_on_idle_ms) is not int or close_on_idle_ms <= 0
    ):
        raise TopologyError(
            f"close_on_idle_ms must be a positive int (ms) or None, not {close_on_idle_ms!r}"
        )


def _not_compiled(ctx: Any, stream_time: int) -> None:
    raise RuntimeError("a window operator closed windows before its tree was compiled")


class LateRecordError(EokafkaError):
    """Why a late record went to the dead-letter topic (its ``eokafka.error.*`` headers)."""


class WindowOperator:
    """The per-record work of one windowed aggregation (see the module docstring)."""

    def __init__(
        self,
        root: Root,
        name: str,
        windows: Windows,
        agg: Aggregator,
        final: bool,
        late: Late,
        timestamp: TimestampFn | None,
        close_on_idle_ms: int | None = None,
    ) -> None:
        check_idle(close_on_idle_ms)
        self.root = root
        self.close_on_idle_ms = close_on_idle_ms
        self._close_idle: Callable[[Any, int], None] = _not_compiled
        self.name = name
        self.windows = windows
        self.agg = agg
        self.final = final
        self.late = late
        self.timestamp = timestamp
        self.dlq = f"{root.app.application_id}-dlq"
        self.key_serde = root.key_serde
        self.dropped = f"window({name}): None key or value"
        self.time_store = stream_time_store(name)

    def event_time(self, key: Any, value: Any) -> int:
        root = self.root
        if self.timestamp is not None:
            record = Record(key, value, root.record.message)
            return check_timestamp(self.timestamp(record), f"window {self.name!r} timestamp=")
        if root.ts is not None:
            return root.ts
        return check_timestamp(root.record.timestamp, f"the record timestamp of {self.name!r}")

    def wrap(self, nxt: Emit) -> Emit:
        windows, agg, final, name, root = self.windows, self.agg, self.final, self.name, self.root
        time_store = self.time_store
        serialize_key, deserialize_key = self.key_serde.serialize, self.key_serde.deserialize
        result = agg.result
        is_late, add, close, next_close = (
            windows.is_late, windows.add, windows.close, windows.next_close
        )
        # Reuse a key's decoded windows for its next record (see Aggregator.pure); only
        # windows that keep aggregates, never record values, and only built-in aggregations.
        reuse = agg.pure and isinstance(windows, w.Hopping)
        timestamp = self.timestamp
        what = f"the record timestamp of {name!r}"
        codec: list[Any] = [None, None, None]  # the store's aggregate serde, its two halves
        windowed = tuple.__new__  # Windowed(...) without its Python-level __new__

        def decode(payload: bytes) -> KeyState:
            return decode_state(payload, codec[2])

        def emit(key: Any, value: Any, ctx: Any) -> None:
            if key is None or value is None:
                ctx.drop(self.dropped)
                return
            if timestamp is None and root.ts is None:
                ts = root.record.timestamp
                if type(ts) is not int or ts < 0:
                    check_timestamp(ts, what)  # raises, naming the store
            else:
                ts = self.event_time(key, value)
            clock: StreamTimeStore = ctx.store(time_store)
            before = clock.stream_time()
            now = ts if before is None or ts > before else before
            if is_late(ts, now):
                self.on_late(ctx, ts, now)
                return
            if now != before:
                clock.set_stream_time(now)
            store: WindowStore = ctx.store(name)
            serde = store.aggregate_serde
            if serde is not codec[0]:  # every instance of a store shares its spec's serde
                codec[:] = serde, serde.serialize, serde.deserialize
            serialize = codec[1]
            kb = serialize_key(key)
            if kb is None:
                raise ValueError("a windowed aggregation's key serialized to None")
            found = store.state(kb, decode)
            state = KeyState() if found is None else found[1]
            changes = add(state, key, ts, value, agg, not final)
            store.put_entry(
                kb,
                next_close(state),
                encode_state(state, serialize),
                None if found is None else found[0],
                state if reuse else None,
            )
            for start, end, aggregate in changes:
                out = None if aggregate is REMOVED else result(aggregate)
                nxt(windowed(Windowed, (key, start, end)), out, ctx)
            if now == before:
                return
            due = store.due(now)
            if due:  # most records advance stream time without closing a window
                close_due(store, due, now, key, kb, ctx)

        def close_due(
            store: WindowStore,
            due: list[tuple[bytes, int, bytes]],
            now: int,
            key: Any,
            kb: bytes | None,
            ctx: Any,
        ) -> None:
            """Close the windows ``store.due(now)`` gave: final results, tombstones."""
            serialize, deserialize = codec[1], codec[2]
            for kb2, _, payload in due:
                state = decode_state(payload, deserialize)
                key2 = key if kb2 == kb else deserialize_key(kb2)
                closed = close(state, key2, now, agg) or []
                store.put_entry(
                    kb2,
                    next_close(state),
                    encode_state(state, serialize),
                    None,
                    state if reuse else None,
                )
                if final:
                    for start, end, aggregate in closed:
                        nxt(Windowed(key2, start, end), result(aggregate), ctx)

        def close_idle(ctx: Any, stream_time: int) -> None:
            store: WindowStore = ctx.store(name)
            serde = store.aggregate_serde
            if serde is not codec[0]:
                codec[:] = serde, serde.serialize, serde.deserialize
            close_due(store, store.due(stream_time), stream_time, None, None, ctx)

        self._close_idle = close_idle
        return emit

    def close_idle(self, ctx: Any, active_ms: int, now_ms: int) -> int | None:
        """The partition had no record since wall-clock ``active_ms``, and ``now_ms`` is past
        ``close_on_idle_ms`` after it: stream time moves on by the wall-clock time since then
        and the windows it passes close. Returns the new stream time (None: nothing moved)."""
        idle = self.close_on_idle_ms
        if idle is None or now_ms - active_ms < idle:
            return None
        clock: StreamTimeStore = ctx.store(self.time_store)
        target = clock.idle_target(active_ms, now_ms)
        if target is None:
            return None
        self.root.compiled()
        clock.set_stream_time(target)
        root = self.root
        root.record, root.ts = None, target  # outputs carry the new stream time
        try:
            self._close_idle(ctx, target)
        finally:
            root.ts = None
        return target

    def on_late(self, ctx: Any, ts: int, stream_time: int) -> None:
        """Count it, note it for the log (one line per record: dsl/late.py), and drop it or
        send it to the dead-letter topic."""
        record: Record = self.root.record
        windows = self.windows
        count = len(windows.windows_for(ts)) if isinstance(windows, w.Hopping) else 1
        if self.late == "drop":
            ctx.late_record(self.name, "dropped")
            self.root.late.note(LateNote(self.name, count, ts, stream_time, "dropped"))
            return
        why = (
            f"late for window store {self.name!r}: event time {ts} is past its window's close "
            f"at stream time {stream_time} ({windows!r})"
        )
        headers = dead_letter_headers(
            record.message, self.root._source.name, "window", LateRecordError(why)
        )
        ctx.send(self.dlq, key=record.raw_key, value=record.raw_value, headers=headers)
        ctx.late_record(self.name, "dead-lettered")
        action = f"dead-lettered to {self.dlq}"
        self.root.late.note(LateNote(self.name, count, ts, stream_time, action))

