"""The fluent classes a pipeline is written with: Stream, GroupedStream, Table, and the
windowed ones. One module, because each returns the others; the sources that start a
pipeline (``app.stream``, ``app.table``) are in ``sources.py``.

They only declare: each method hangs an operator (``operators.py``, ``windowed.py``) on the
processor of its source topic (``graph.py``), adds the stores it uses and the topics it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from eokafka import windows as w
from eokafka.dsl import operators as op
from eokafka.dsl.graph import MISSING, Node, Root, TimestampFn, Wrap, claim_store, sink
from eokafka.dsl.windowed import EmitMode, Late, WindowOperator, check_emit, window_retention
from eokafka.errors import TopologyError
from eokafka.serdes import Serde
from eokafka.state import stream_time_store
from eokafka.windows import Aggregator, WindowedSerde, Windows


class Stream:
    """A record stream of (key, value); every operator returns a new Stream.

    Operators chained on one Stream object more than once branch: each branch sees every
    record, in the order the branches were declared.
    """

    def __init__(self, root: Root, node: Node, rekeyed: bool = False) -> None:
        self._root = root
        self._node = node
        self._rekeyed = rekeyed  # the key may differ from the one the topic is partitioned by

    def _then(self, label: str, wrap: Wrap, rekeys: bool = False) -> Stream:
        node = self._root.add(self._node, label, wrap)
        return Stream(self._root, node, self._rekeyed or rekeys)

    # -- stateless operators (fused into the source's processor) -------------------------

    def map(self, fn: Callable[[Any, Any], tuple[Any, Any]]) -> Stream:
        """``fn(key, value) -> (new_key, new_value)``; a later aggregation repartitions."""
        return self._then("map", op.mapping(fn), rekeys=True)

    def map_values(self, fn: Callable[[Any], Any]) -> Stream:
        """``fn(value) -> new_value``; keeps the key, so no repartition follows."""
        return self._then("map_values", op.mapping_values(fn))

    def filter(self, predicate: Callable[[Any, Any], Any]) -> Stream:
        """Keep the records for which ``predicate(key, value)`` is true."""
        return self._then("filter", op.filtering(predicate))

    def flat_map(self, fn: Callable[[Any, Any], Iterable[tuple[Any, Any]]]) -> Stream:
        """``fn(key, value) -> iterable of (key, value)``; zero, one or many records out."""
        return self._then("flat_map", op.flat_mapping(fn), rekeys=True)

    def peek(self, fn: Callable[[Any, Any], Any]) -> Stream:
        """Call ``fn(key, value)`` for its side effect; it runs again if a batch is replayed."""
        return self._then("peek", op.peeking(fn))

    def to(
        self, topic: str, *, key_serde: Serde | None = None, value_serde: Serde | None = None
    ) -> None:
        """Send every record to ``topic`` inside the transaction."""
        self._then(f"to({topic})", sink(topic, key_serde, value_serde, self._root))

    def to_sink(self, name: str, row: Callable[[Any, Any], Any] | None = None) -> None:
        """Write every record to the sink ``name`` (``app.sink(...)``) inside the transaction.

        ``row(key, value)`` makes the row (default: the value); it becomes visible exactly
        when the Kafka transaction commits.
        """
        if name not in self._root.app.topology.sinks:
            raise TopologyError(f"to_sink({name!r}): no sink of that name; add it with app.sink")
        self._then(f"to_sink({name})", op.writing_sink(name, row))

    # -- re-keying and state -------------------------------------------------------------

    def repartition(
        self, name: str, *, key_serde: Serde | None = None, value_serde: Serde | None = None
    ) -> Stream:
        """Route records by their current key through ``<application id>-<name>-repartition``."""
        return self._repartition(name, key_serde, value_serde, drop_null_keys=False)

    def _repartition(
        self, name: str, key_serde: Serde | None, value_serde: Serde | None, drop_null_keys: bool
    ) -> Stream:
        root = op.repartition(self._root, self._node, name, key_serde, value_serde, drop_null_keys)
        return Stream(root, root.node)

    def group_by_key(
        self,
        *,
        name: str | None = None,
        key_serde: Serde | None = None,
        value_serde: Serde | None = None,
    ) -> GroupedStream:
        """Group by the current key; repartitions (named ``name``) only after a key change."""
        return GroupedStream(self, name, key_serde, value_serde)

    def group_by(
        self,
        fn: Callable[[Any, Any], Any],
        *,
        name: str | None = None,
        key_serde: Serde | None = None,
        value_serde: Serde | None = None,
    ) -> GroupedStream:
        """Group by ``fn(key, value)``: always a key change, so the aggregation repartitions.

        The repartition topic is ``<application id>-<name>-repartition``; without ``name`` the
        first aggregation's name is used. Its records use ``key_serde``/``value_serde``
        (JSON by default).
        """
        rekeyed = self._then("group_by", op.keying(fn), rekeys=True)
        return GroupedStream(rekeyed, name, key_serde, value_serde)

    def join(
        self, table: Table, joiner: Callable[[Any, Any], Any], *, name: str | None = None
    ) -> Stream:
        """Inner join with a co-partitioned table by key: ``joiner(value, table_value)``.

        Records whose key is absent from the table are dropped. After a key change the stream
        is repartitioned first (``name`` required), with the table's key serde.
        """
        return self._join(table, joiner, name, left=False)

    def left_join(
        self, table: Table, joiner: Callable[[Any, Any], Any], *, name: str | None = None
    ) -> Stream:
        """Like :meth:`join`, but a key absent from the table gives ``joiner(value, None)``."""
        return self._join(table, joiner, name, left=True)

    def _join(
        self, table: Table, joiner: Callable[[Any, Any], Any], name: str | None, left: bool
    ) -> Stream:
        if not table.joinable:
            raise TopologyError(
                f"table {table.name!r} is windowed: a stream joins tables keyed like itself"
            )
        stream = self
        if self._rekeyed:
            if name is None:
                raise TopologyError(
                    f"the stream's key changed before its join with table {table.name!r}: give "
                    "name= for the repartition topic that puts each key on its table partition"
                )
            stream = self._repartition(name, table.key_serde, None, drop_null_keys=not left)
        store = table.name
        stream._root.add_store(store)  # opens the table's instance for this partition
        return stream._then(
            f"{'left_join' if left else 'join'}({store})", op.joining(store, joiner, left)
        )


class GroupedStream:
    """A stream waiting for its aggregation; the repartition (if any) is made by the first one."""

    def __init__(
        self,
        stream: Stream,
        name: str | None,
        key_serde: Serde | None,
        value_serde: Serde | None,
    ) -> None:
        self._stream = stream
        self._name = name
        self._key_serde = key_serde
        self._value_serde = value_serde
        self._grouped: Stream | None = None  # shared by every aggregation of this grouping

    def _source(self, aggregation: str) -> Stream:
        if self._grouped is None:
            stream = self._stream
            if stream._rekeyed:
                stream = stream._repartition(
                    self._name or aggregation, self._key_serde, self._value_serde, True
                )
            self._grouped = stream
        return self._grouped

    def window(
        self,
        windows: Windows,
        *,
        timestamp: TimestampFn | None = None,
        late: Late = "drop",
        retention_ms: int | None = None,
        close_on_idle_ms: int | None = None,
    ) -> WindowedStream:
        """Aggregate per key and event-time window (see ``eokafka.windows``).

        ``timestamp(record)`` gives a record's event time, the record carrying the key and
        value as grouped (default: the source's ``timestamp=``, else the record timestamp).
        ``late`` says what happens to records whose window has closed: ``"drop"`` (counted
        and logged) or ``"dead-letter"`` (to ``<application id>-dlq`` with headers).
        ``retention_ms`` is the window store changelog's (default: the windows' reach + 1 day).
        ``close_on_idle_ms``: when a partition had no record for that long (wall clock), its
        stream time moves on with the wall clock and due windows close and emit; this trades
        replay determinism for latency (README "Windows that close without new data").
        """
        return WindowedStream(self, windows, timestamp, late, retention_ms, close_on_idle_ms)

    def count(self, *, name: str) -> Table:
        """Records per key, kept in store ``name``."""
        return self._aggregate(
            "count", name, lambda key, value, old: (0 if old is MISSING else old) + 1
        )

    def reduce(self, reducer: Callable[[Any, Any], Any], *, name: str) -> Table:
        """``reducer(aggregate, value)``; the first value of a key is its aggregate."""
        return self._aggregate(
            "reduce",
            name,
            lambda key, value, old: value if old is MISSING else reducer(old, value),
        )

    def aggregate(
        self,
        initializer: Callable[[], Any],
        aggregator: Callable[[Any, Any, Any], Any],
        *,
        name: str,
    ) -> Table:
        """``aggregator(key, value, aggregate)``, starting from ``initializer()`` per key."""
        return self._aggregate(
            "aggregate",
            name,
            lambda key, value, old: aggregator(
                key, value, initializer() if old is MISSING else old
            ),
        )

    def _aggregate(self, label: str, name: str, update: Callable[[Any, Any, Any], Any]) -> Table:
        claim_store(self._stream._root.app, name, label)
        stream = self._source(name)
        root = stream._root
        root.add_store(name)
        node = root.add(stream._node, f"{label}({name})", op.aggregating(label, name, update))
        return Table(root, node, name, root.key_serde)


class Table:
    """The latest value per key, kept in a store; every update (key, new value) flows on.

    Deletions flow on as tombstones (value None).
    """

    joinable = True  # a stream can join it by key (windowed tables are keyed by window)

    def __init__(self, root: Root, node: Node, store: str, key_serde: Serde) -> None:
        self._root = root
        self._node = node
        self.name = store  # the store holding the table
        self.key_serde = key_serde  # how its topic's keys are written (for co-partitioning)

    def to(
        self, topic: str, *, key_serde: Serde | None = None, value_serde: Serde | None = None
    ) -> None:
        """Send every update to ``topic`` inside the transaction."""
        self._root.add(self._node, f"to({topic})", sink(topic, key_serde, value_serde, self._root))

    def to_sink(self, name: str, row: Callable[[Any, Any], Any] | None = None) -> None:
        """Write every update to the sink ``name`` (see ``Stream.to_sink``)."""
        self.to_stream().to_sink(name, row)

    def to_stream(self) -> Stream:
        """The table's updates as a stream (same processor, no hop)."""
        return Stream(self._root, self._node)


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
        close_on_idle_ms: int | None = None,
    ) -> None:
        self._retention_ms = window_retention(windows, late, retention_ms)
        self._close_on_idle_ms = close_on_idle_ms
        self._grouped = grouped
        self._windows = windows
        self._timestamp = timestamp
        self._late = late

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
        check_emit(label, name, emit)
        grouped = self._grouped
        app = grouped._stream._root.app
        claim_store(app, name, f"windowed {label}")
        claim_store(app, stream_time_store(name), f"windowed {label}({name!r}) stream time")
        stream = grouped._source(name)
        root = stream._root
        root.add_store(name)
        root.add_store(stream_time_store(name))
        app.topology.add_window_store(name, self._retention_ms)
        if self._late == "dead-letter":
            app.topology.add_dead_letters()
        idle = self._close_on_idle_ms
        operator = WindowOperator(
            root, name, self._windows, agg, emit == "final", self._late, self._timestamp, idle
        )
        closing = ""
        if idle is not None:
            app.topology.add_idle_window(name, operator)
            closing = f", close on idle {idle} ms"
        node = root.add(stream._node, f"window {label}({name}, {emit}{closing})", operator.wrap)
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

