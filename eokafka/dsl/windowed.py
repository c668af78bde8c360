"""Windowed aggregations: ``group_by...().window(w).count()/sum()/...`` on a window store.

Per record, inside the open transaction: read the partition's stream time from the store,
advance it, drop or dead-letter the record if its window has closed, else update the key's
windows. When stream time moved, close every window it passed: emit its final result
(``emit="final"``) and delete it (tombstone). Stream time, windows, tombstones and outputs
are all in the one transaction, so a worker killed after closing a window and before the
commit leaves nothing behind, and the replay closes the same window again, once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, get_args

from eokafka import windows as w
from eokafka.dsl.graph import Emit, Root, TimestampFn, check_timestamp, claim_store
from eokafka.dsl.table import Table
from eokafka.errors import EokafkaError, TopologyError
from eokafka.record import Record
from eokafka.runtime.commit.dead_letters import dead_letter_headers
from eokafka.serdes import Serde
from eokafka.state import WindowStore
from eokafka.windows import (
    REMOVED,
    Aggregator,
    KeyState,
    Windowed,
    WindowedSerde,
    Windows,
    decode_state,
    encode_state,
)

if TYPE_CHECKING:
    from eokafka.dsl.table import GroupedStream

log = logging.getLogger("eokafka.windows")
Late = Literal["drop", "dead-letter"]
EmitMode = Literal["update", "final"]
DEFAULT_RETENTION_MARGIN_MS = 24 * 3600 * 1000  # as Kafka Streams' changelog margin


class LateRecordError(EokafkaError):
    """Why a late record went to the dead-letter topic (its ``eokafka.error.*`` headers)."""


class WindowedStream:
    """A grouped stream cut into event-time windows, waiting for its aggregation.

    Every aggregation takes ``name`` (its window store, changelog ``<app id>-<name>-changelog``)
    and ``emit``: ``"update"`` sends (Windowed(key, start, end), aggregate) for every change,
    ``"final"`` sends each window's result once, when stream time passes its close.
    """

    def __init__(
        self,
        grouped: GroupedStream,
        windows: Windows,
        timestamp: TimestampFn | None,
        late: Late,
        retention_ms: int | None,
    ) -> None:
        if not isinstance(windows, Windows):
            raise TopologyError(f"window() takes an eokafka.windows definition, not {windows!r}")
        if late not in get_args(Late):
            raise TopologyError(f"late must be one of {get_args(Late)}, not {late!r}")
        if retention_ms is not None and (type(retention_ms) is not int or retention_ms <= 0):
            raise TopologyError(f"retention_ms must be a positive int, not {retention_ms!r}")
        self._grouped = grouped
        self._windows = windows
        self._timestamp = timestamp
        self._late = late
        self._retention_ms = retention_ms or windows.horizon_ms + DEFAULT_RETENTION_MARGIN_MS

    # -- aggregations ----------------------------------------------------------------------

    def count(self, *, name: str, emit: EmitMode = "update") -> WindowedTable:
        """Records per key and window."""
        return self._aggregate("count", name, emit, w.counting())

    def sum(
        self, fn: Callable[[Any], Any] | None = None, *, name: str, emit: EmitMode = "update"
    ) -> WindowedTable:
        """The sum of ``fn(value)`` (default: the value itself)."""
        return self._aggregate("sum", name, emit, w.summing(fn))

    def min(
        self, fn: Callable[[Any], Any] | None = None, *, name: str, emit: EmitMode = "update"
    ) -> WindowedTable:
        """The smallest ``fn(value)`` (default: the value itself)."""
        return self._aggregate("min", name, emit, w.picking(min, fn))

    def max(
        self, fn: Callable[[Any], Any] | None = None, *, name: str, emit: EmitMode = "update"
    ) -> WindowedTable:
        """The largest ``fn(value)`` (default: the value itself)."""
        return self._aggregate("max", name, emit, w.picking(max, fn))

    def mean(
        self, fn: Callable[[Any], Any] | None = None, *, name: str, emit: EmitMode = "update"
    ) -> WindowedTable:
        """The mean of ``fn(value)``; the store keeps ``[sum, count]``, the output is a float."""
        return self._aggregate("mean", name, emit, w.averaging(fn))

    def reduce(
        self, reducer: Callable[[Any, Any], Any], *, name: str, emit: EmitMode = "update"
    ) -> WindowedTable:
        """``reducer(aggregate, value)``; a window's first value is its aggregate. Sessions
        merge with ``reducer(a, b)`` too, so it must be associative there."""
        return self._aggregate("reduce", name, emit, w.reducing(reducer))

    def aggregate(
        self,
        initializer: Callable[[], Any],
        aggregator: Callable[[Any, Any, Any], Any],
        *,
        name: str,
        emit: EmitMode = "update",
        merger: Callable[[Any, Any, Any], Any] | None = None,
    ) -> WindowedTable:
        """``aggregator(key, value, aggregate)`` from ``initializer()`` per window; session
        windows also need ``merger(key, a, b)`` to join two sessions' aggregates."""
        if isinstance(self._windows, w.Session) and merger is None:
            raise TopologyError(
                f"aggregate({name!r}) over session windows needs merger=(key, a, b) -> aggregate"
            )
        return self._aggregate(
            "aggregate", name, emit, w.aggregating(initializer, aggregator, merger)
        )

    # -- compilation -----------------------------------------------------------------------

    def _aggregate(self, label: str, name: str, emit: EmitMode, agg: Aggregator) -> WindowedTable:
        if emit not in get_args(EmitMode):
            raise TopologyError(
                f"{label}({name!r}): emit must be 'update' or 'final', not {emit!r}"
            )
        grouped = self._grouped
        app = grouped._stream._root.app
        claim_store(app, name, f"windowed {label}")
        stream = grouped._source(name)
        root = stream._root
        root.add_store(name)
        app.topology.add_window_store(name, self._retention_ms)
        if self._late == "dead-letter":
            app.topology.add_internal_topic(f"{app.application_id}-dlq", partitions_like=root.like)
        operator = _WindowOperator(
            root, name, self._windows, agg, emit == "final", self._late, self._timestamp
        )
        node = root.add(stream._node, f"window {label}({name}, {emit})", operator.wrap)
        return WindowedTable(root, node, name, WindowedSerde(root.key_serde))


class WindowedTable(Table):
    """A windowed aggregation's results, keyed by :class:`~eokafka.windows.Windowed`.

    ``to(topic)`` writes keys in the windowed wire format (``WindowedSerde`` over the grouping
    key's serde) unless given another ``key_serde``. With ``emit="update"``, a session merged
    into another one is sent as a tombstone (value None).
    """

    joinable = False

    def to(
        self, topic: str, *, key_serde: Serde | None = None, value_serde: Serde | None = None
    ) -> None:
        super().to(topic, key_serde=key_serde or self.key_serde, value_serde=value_serde)


class _WindowOperator:
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
    ) -> None:
        self.root = root
        self.name = name
        self.windows = windows
        self.agg = agg
        self.final = final
        self.late = late
        self.timestamp = timestamp
        self.dlq = f"{root.app.application_id}-dlq"
        self.key_serde = root.key_serde
        self.dropped = f"window({name}): None key or value"

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
            store: WindowStore = ctx.store(name)
            before = store.stream_time()
            now = ts if before is None or ts > before else before
            if is_late(ts, now):
                self.on_late(ctx, ts, now)
                return
            if now != before:
                store.set_stream_time(now)
            serde = store.aggregate_serde
            if serde is not codec[0]:  # every instance of a store shares its spec's serde
                codec[:] = serde, serde.serialize, serde.deserialize
            serialize, deserialize = codec[1], codec[2]
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
            for kb2, _, payload in store.due(now):
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

        return emit

    def on_late(self, ctx: Any, ts: int, stream_time: int) -> None:
        """Count it, log it, and drop it or send it to the dead-letter topic."""
        record: Record = self.root.record
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        why = (
            f"late for window store {self.name!r}: event time {ts} is past its window's close "
            f"at stream time {stream_time} ({self.windows!r})"
        )
        if self.late == "drop":
            ctx.late_record(self.name, "dropped")
            log.warning("dropped record %s: %s", where, why)
            return
        headers = dead_letter_headers(
            record.message, self.root._source.name, "window", LateRecordError(why)
        )
        ctx.send(self.dlq, key=record.raw_key, value=record.raw_value, headers=headers)
        ctx.late_record(self.name, "dead-lettered")
        log.warning("dead-lettered record %s to %s: %s", where, self.dlq, why)

