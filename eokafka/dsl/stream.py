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
from eokafka.dsl import table_ops
from eokafka.dsl.asof import AsOfJoin
from eokafka.dsl.graph import (
    MISSING,
    Node,
    Root,
    TimestampFn,
    Wrap,
    claim_store,
    identity,
    sink,
)
from eokafka.dsl.stream_join import METHODS, JoinKind, StreamJoin
from eokafka.dsl.windowed import (
    DEFAULT_RETENTION_MARGIN_MS,
    EmitMode,
    Late,
    WindowOperator,
    check_emit,
    window_retention,
)
from eokafka.errors import TopologyError
from eokafka.serdes import Serde
from eokafka.state import stream_time_store
from eokafka.windows import Aggregator, JoinWindows, WindowedSerde, Windows


class Stream:
    """A record stream of (key, value); every operator returns a new Stream.

    Operators chained on one Stream object more than once branch: each branch sees every
    record, in the order the branches were declared.
    """

    def __init__(
        self,
        root: Root,
        node: Node,
        rekeyed: bool = False,
        more: tuple[tuple[Root, Node], ...] = (),
    ) -> None:
        self._root = root
        self._node = node
        self._rekeyed = rekeyed  # the key may differ from the one the topic is partitioned by
        # The other (processor, operator) ends of a stream fed by several processors (a
        # windowed join's two sides, a merge): every operator chained on is hung under each.
        self._more = more

    def _tips(self) -> list[tuple[Root, Node]]:
        return [(self._root, self._node), *self._more]

    def _to_table(self, name: str | None) -> Table:
        """This stream of updates as a table, kept in store ``name`` if given."""
        stream = self
        if name is not None:
            claim_store(self._root.app, name, f"table {name!r}")
            for root, _ in self._tips():
                root.add_store(name)
            stream = self._then(f"store({name})", op.storing(f"table {name}", name))
        return Table(stream._root, stream._node, name, self._root.key_serde, None, stream._more)

    def _then(self, label: str, wrap: Wrap, rekeys: bool = False) -> Stream:
        return self._then_each(label, lambda _root: wrap, rekeys)

    def _then_each(self, label: str, make: Callable[[Root], Wrap], rekeys: bool = False) -> Stream:
        """Hang an operator under every end, ``make(root)`` giving each processor's own."""
        tips = [(root, root.add(node, label, make(root))) for root, node in self._tips()]
        return Stream(tips[0][0], tips[0][1], self._rekeyed or rekeys, tuple(tips[1:]))

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

    def merge(self, *others: Stream) -> Stream:
        """One stream of the records of this one and of ``others``, each as it comes.

        Nothing is copied through Kafka: the operators chained on run in the processor of
        each input, so a record's outputs stay all-or-nothing. An aggregation of a merged
        stream repartitions first (as after a key change), so each key has one task.
        """
        tips = self._tips()
        for other in others:
            if not isinstance(other, Stream):
                raise TopologyError(
                    f"merge({_what(other)}): merge takes streams; a table's updates are "
                    "table.to_stream()"
                )
            if other._root.app is not self._root.app:
                raise TopologyError("merge(): the stream is declared in another app")
            tips += other._tips()
        merged = Stream(tips[0][0], tips[0][1], any(s._rekeyed for s in (self, *others)))
        merged._more = tuple(tips[1:])
        return merged._then("merge", identity)

    def split(
        self, branches: dict[str, Callable[[Any, Any], Any]], *, default: str | None = None
    ) -> dict[str, Stream]:
        """Named branches: each record goes to the first branch whose ``predicate(key,
        value)`` holds, else to ``default`` (if named; otherwise nowhere).

        Returns the branch streams by name, ``default`` last. The branches run in this
        stream's processor, so a record's outputs in all of them are all-or-nothing.
        """
        if not branches:
            raise TopologyError("split() needs at least one branch: {name: predicate(key, value)}")
        for name, predicate in branches.items():
            if not isinstance(name, str) or not callable(predicate):
                raise TopologyError(
                    f"split(): branch {name!r} must map a str name to a callable "
                    f"predicate(key, value), not {predicate!r}"
                )
        if default is not None and default in branches:
            raise TopologyError(f"split(): the default branch {default!r} is also a named branch")
        names = [*branches, *([default] if default is not None else [])]
        choose, *each = op.splitting(list(branches.values()), default is not None)
        chosen = self._then(f"split({', '.join(names)})", choose)
        return {
            name: chosen._then(f"branch({name})", wrap)
            for name, wrap in zip(names, each, strict=True)
        }

    def to(
        self, topic: str, *, key_serde: Serde | None = None, value_serde: Serde | None = None
    ) -> None:
        """Send every record to ``topic`` inside the transaction."""
        self._then_each(f"to({topic})", lambda root: sink(topic, key_serde, value_serde, root))

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
        root = op.repartition(
            self._root, self._node, name, key_serde, value_serde, drop_null_keys, self._more
        )
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
        self,
        other: Table | Stream,
        joiner: Callable[[Any, Any], Any],
        *,
        window: JoinWindows | None = None,
        name: str | None = None,
        max_wait_ms: int = 0,
    ) -> Stream:
        """Inner join by key: ``joiner(value, other_value)``.

        With a co-partitioned **table**: each record joins the table's value for its key;
        records whose key is absent are dropped. After a key change the stream is
        repartitioned first (``name`` required), with the table's key serde. A versioned
        table (``history_ms=``) joins as of each record's time, waiting up to
        ``max_wait_ms`` of stream time for the table to catch up (``eokafka.dsl.asof``;
        ``name`` names the store ``<name>-waiting`` then).

        With another **stream**: a windowed join (``window=JoinWindows(before_ms, after_ms,
        grace_ms)``, see ``eokafka.windows.join``), its records buffered in the stores
        ``<name>-left`` and ``<name>-right``; each pair of records of a key within the window
        gives one result, at the later of their two timestamps. A stream whose key changed
        is repartitioned first (``<name>-left``/``<name>-right`` repartition topics).
        """
        return self._join(other, joiner, window, name, "inner", max_wait_ms)

    def left_join(
        self,
        other: Table | Stream,
        joiner: Callable[[Any, Any], Any],
        *,
        window: JoinWindows | None = None,
        name: str | None = None,
        max_wait_ms: int = 0,
    ) -> Stream:
        """Like :meth:`join`, but a record that joins nothing gives ``joiner(value, None)``:
        at once for a table; for a stream, once its window has closed (never earlier)."""
        return self._join(other, joiner, window, name, "left", max_wait_ms)

    def outer_join(
        self,
        other: Stream,
        joiner: Callable[[Any, Any], Any],
        *,
        window: JoinWindows | None = None,
        name: str | None = None,
    ) -> Stream:
        """A windowed join of two streams (see :meth:`join`) where a record of either side
        that joined nothing gives ``joiner(value, None)`` or ``joiner(None, value)`` once its
        window has closed."""
        if not isinstance(other, Stream):
            raise TopologyError(
                f"outer_join({_what(other)}): an outer join is of two streams; join a table "
                "with stream.left_join(table, ...)"
            )
        return self._join(other, joiner, window, name, "outer")

    def _join(
        self,
        other: Table | Stream,
        joiner: Callable[[Any, Any], Any],
        window: JoinWindows | None,
        name: str | None,
        kind: JoinKind,
        max_wait_ms: int = 0,
    ) -> Stream:
        if isinstance(other, Stream):
            return self._join_stream(other, joiner, window, name, kind)
        if not isinstance(other, Table):
            raise TopologyError(
                f"join({_what(other)}): a stream joins a Table (app.table) or another Stream"
            )
        table, left = other, kind == "left"
        if window is not None:
            raise TopologyError(
                f"join with table {table.name!r} takes no window=: a stream joins a table by "
                "key; JoinWindows are for joins of two streams"
            )
        if not table.joinable:
            raise TopologyError(
                f"table {table.name!r} is windowed: a stream joins tables keyed like itself"
            )
        table._check_stored(f"{'left_join' if left else 'join'} with a table")
        if type(max_wait_ms) is not int or max_wait_ms < 0:
            raise TopologyError(f"max_wait_ms must be an int >= 0, not {max_wait_ms!r}")
        if max_wait_ms and table.history_ms is None:
            raise TopologyError(
                f"max_wait_ms= waits for a versioned table; table {table.name!r} keeps no "
                "history: declare it with app.table(..., history_ms=)"
            )
        if max_wait_ms and name is None:
            raise TopologyError(
                f"a join that waits for table {table.name!r} needs name=: it names the store "
                "<name>-waiting of the records that wait"
            )
        stream = self
        if self._rekeyed:
            if name is None:
                raise TopologyError(
                    f"the stream's key changed before its join with table {table.name!r}: give "
                    "name= for the repartition topic that puts each key on its table partition"
                )
            stream = self._repartition(name, table.key_serde, None, drop_null_keys=not left)
        if table.history_ms is not None:
            return stream._join_as_of(table, joiner, name, left, max_wait_ms)
        store = table.name
        assert store is not None
        for root, _ in stream._tips():
            root.add_store(store)  # opens the table's instance for this partition
        return stream._then(
            f"{'left_join' if left else 'join'}({store})", op.joining(store, joiner, left)
        )

    def _join_as_of(
        self,
        table: Table,
        joiner: Callable[[Any, Any], Any],
        name: str | None,
        left: bool,
        max_wait_ms: int,
    ) -> Stream:
        assert table.history_ms is not None
        join = AsOfJoin(
            name, table.name, table.history_ms, joiner, left, max_wait_ms, self._root.key_serde
        )
        if join.waiting is not None:
            app = self._root.app
            for store in join.stores[2:]:
                claim_store(app, store, f"the join of {name!r} with table {table.name!r}")
            retention = max_wait_ms + DEFAULT_RETENTION_MARGIN_MS
            app.topology.add_window_store(join.waiting, retention)
            for store in join.stores[2:]:
                table._root.add_store(store)
        for root, _ in self._tips():
            for store in join.stores:
                root.add_store(store)
        ends = self._then_each(join.label, join.stream_side)
        if join.waiting is None:
            return ends
        released = table._root.add(
            table._node, f"{join.label} release", join.table_side(table._root)
        )
        return Stream(ends._root, ends._node, False, (*ends._more, (table._root, released)))

    def _join_stream(
        self,
        other: Stream,
        joiner: Callable[[Any, Any], Any],
        window: JoinWindows | None,
        name: str | None,
        kind: JoinKind,
    ) -> Stream:
        join = StreamJoin.declare(self._root.app, name, window, joiner, kind)
        left, right = self, other
        if left._rekeyed:
            serde = None if right._rekeyed else right._root.key_serde
            left = left._repartition(f"{join.name}-left", serde, None, drop_null_keys=True)
        if right._rekeyed:
            right = right._repartition(f"{join.name}-right", left._root.key_serde, None, True)
        join.key_serde = left._root.key_serde
        join.add_stores([root for root, _ in (*left._tips(), *right._tips())])
        ends = left._then_each(join.label("left"), lambda root: join.side(root, True))
        rights = right._then_each(join.label("right"), lambda root: join.side(root, False))
        return Stream(ends._root, ends._node, False, (*ends._more, *rights._tips()))


def _what(obj: object) -> str:
    if isinstance(obj, Table):
        return f"table {obj.name!r}"
    return type(obj).__name__


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
            if stream._rekeyed or stream._more:  # several processors feed it: one hop
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

    def __init__(
        self,
        root: Root,
        node: Node,
        store: str | None,
        key_serde: Serde,
        history_ms: int | None = None,
        more: tuple[tuple[Root, Node], ...] = (),
    ) -> None:
        self._root = root
        self._node = node
        self._more = more  # the other processors' ends (a joined table), as for a Stream
        self.name = store  # the store holding the table; None if not kept in one
        self.key_serde = key_serde  # how its topic's keys are written (for co-partitioning)
        self.history_ms = history_ms  # a versioned table's (eokafka.dsl.asof), else None

    def to(
        self, topic: str, *, key_serde: Serde | None = None, value_serde: Serde | None = None
    ) -> None:
        """Send every update to ``topic`` inside the transaction."""
        self.to_stream().to(topic, key_serde=key_serde, value_serde=value_serde)

    def filter(self, predicate: Callable[[Any, Any], Any], *, name: str | None = None) -> Table:
        """The rows for which ``predicate(key, value)`` holds; a row that stops passing is
        deleted (a None update). ``name`` keeps the result in a store of that name, which a
        join needs."""
        return self._derive("filter", table_ops.filtering(predicate), name)

    def map_values(self, fn: Callable[[Any], Any], *, name: str | None = None) -> Table:
        """``fn(value)`` per row (deletes stay deletes); ``name`` as for :meth:`filter`."""
        return self._derive("map_values", table_ops.mapping_values(fn), name)

    def join(self, other: Table, joiner: Callable[[Any, Any], Any], *, name: str) -> Table:
        """Inner join with a co-partitioned table by key: ``joiner(value, other_value)`` for
        keys in both, kept in store ``name`` and updated on every change of either."""
        return self._join_table(other, joiner, name, "inner")

    def left_join(self, other: Table, joiner: Callable[[Any, Any], Any], *, name: str) -> Table:
        """Like :meth:`join`, for every key of this table (``other_value`` None if absent)."""
        return self._join_table(other, joiner, name, "left")

    def outer_join(self, other: Table, joiner: Callable[[Any, Any], Any], *, name: str) -> Table:
        """Like :meth:`join`, for every key of either table (None for the absent side)."""
        return self._join_table(other, joiner, name, "outer")

    def _join_table(
        self, other: Table, joiner: Callable[[Any, Any], Any], name: str | None, kind: JoinKind
    ) -> Table:
        method = METHODS[kind]
        if not isinstance(other, Table) or not other.joinable or not self.joinable:
            raise TopologyError(
                f"table {method}({_what(other)}): a table joins a Table keyed like itself; "
                "join a stream with stream.join(table, ...)"
            )
        if name is None:
            raise TopologyError(f"table {method} needs name=: the store of the joined table")
        for table in (self, other):
            table._check_stored(f"table {method}")
            if table.history_ms is not None:
                raise TopologyError(
                    f"versioned table {table.name!r} joins streams (as of their time) only"
                )
        assert self.name is not None and other.name is not None
        wrap = table_ops.joining(self.name, other.name, joiner, kind)
        ends = Stream(self._root, self._node, False, (*self._more, *other._tips()))
        for root, _ in ends._tips():
            root.add_store(self.name)
            root.add_store(other.name)
        return ends._then(f"{method}({self.name}, {other.name})", wrap)._to_table(name)

    def _derive(self, label: str, wrap: Wrap, name: str | None) -> Table:
        return self.to_stream()._then(f"{label}(table)", wrap)._to_table(name)

    def _check_stored(self, what: str) -> None:
        if self.name is None:
            raise TopologyError(
                f"{what}: the table made by filter/map_values is not kept in a store; give "
                "it name= (table.filter(..., name=...)) to join it"
            )

    def _tips(self) -> list[tuple[Root, Node]]:
        return [(self._root, self._node), *self._more]

    def to_sink(self, name: str, row: Callable[[Any, Any], Any] | None = None) -> None:
        """Write every update to the sink ``name`` (see ``Stream.to_sink``)."""
        self.to_stream().to_sink(name, row)

    def to_stream(self) -> Stream:
        """The table's updates as a stream (same processor, no hop; deletes are None)."""
        return Stream(self._root, self._node, False, self._more)


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
