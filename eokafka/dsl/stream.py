"""The fluent classes a pipeline is written with: Stream, GroupedStream, Table and
WindowedTable. One module, because their methods return each other; the sources that start a
pipeline (``app.stream``, ``app.table``) are in ``sources.py``, a grouping's windowed
aggregations in ``windowed_stream.py``.

They only declare, each wrapping a :class:`~eokafka.dsl.pipe.Pipe`: the builders of each job
(``pipe.py``, ``joins.py``, ``grouping.py``, ``table_ops.py``) hang the operators on the
processors of the source topics and add the stores and topics they need.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eokafka.dsl import grouping, joins, table_ops
from eokafka.dsl import operators as op
from eokafka.dsl.bases import StreamBase, TableBase
from eokafka.dsl.fk_join import ForeignKey, join_tables
from eokafka.dsl.global_table import GlobalTable, KeyFn, join_global, refuse_key
from eokafka.dsl.graph import TimestampFn, Wrap, identity
from eokafka.dsl.joins import Joiner
from eokafka.dsl.pipe import Pipe
from eokafka.dsl.stream_join import METHODS, JoinKind
from eokafka.dsl.windowed import Late
from eokafka.dsl.windowed_stream import WindowedStream
from eokafka.errors import TopologyError
from eokafka.serdes import Serde
from eokafka.windows import JoinWindows, WindowedSerde, Windows


class Stream(StreamBase):
    """A record stream of (key, value); every operator returns a new Stream.

    Operators chained on one Stream object more than once branch: each branch sees every
    record, in the order the branches were declared.
    """

    def merge(self, *others: Stream) -> Stream:
        """One stream of the records of this one and of ``others``, each as it comes.

        Nothing is copied through Kafka: the operators chained on run in the processor of
        each input, so a record's outputs stay all-or-nothing. An aggregation of a merged
        stream repartitions first (as after a key change), so each key has one task.
        """
        for other in others:
            if not isinstance(other, Stream):
                raise TopologyError(
                    f"merge({_what(other)}): merge takes streams; a table's updates are "
                    "table.to_stream()"
                )
            if other._pipe.root.app is not self._pipe.root.app:
                raise TopologyError("merge(): the stream is declared in another app")
        pipes = [s._pipe for s in (self, *others)]
        merged = self._pipe.joined(*pipes[1:], rekeyed=any(p.rekeyed for p in pipes))
        return self._of(merged.then("merge", identity))

    # -- grouping and joins ---------------------------------------------------------------

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
        other: Table | GlobalTable | Stream,
        joiner: Callable[[Any, Any], Any],
        *,
        window: JoinWindows | None = None,
        name: str | None = None,
        max_wait_ms: int = 0,
        release_on_idle_ms: int | None = None,
        key: KeyFn | None = None,
    ) -> Stream:
        """Inner join by key: ``joiner(value, other_value)``.

        With a co-partitioned **table**: each record joins the table's value for its key;
        records whose key is absent are dropped. After a key change the stream is
        repartitioned first (``name`` required), with the table's key serde. A versioned
        table (``history_ms=``) joins as of each record's time, waiting up to
        ``max_wait_ms`` of stream time for the table to catch up (``eokafka.dsl.asof``;
        ``name`` names the store ``<name>-waiting`` then); with ``release_on_idle_ms``, a
        partition idle that long by wall clock lets its stream time move on by wall clock, so
        waiting records do not wait for new data.

        With another **stream**: a windowed join (``window=JoinWindows(before_ms, after_ms,
        grace_ms)``, see ``eokafka.windows.join``), its records buffered in the stores
        ``<name>-left`` and ``<name>-right``; each pair of records of a key within the window
        gives one result, at the later of their two timestamps. A stream whose key changed
        is repartitioned first (``<name>-left``/``<name>-right`` repartition topics).

        With a **global table** (``app.global_table``): each record joins the table's value
        at ``key(key, value)`` (required), whatever the stream's key or partitioning; no
        repartition (``eokafka.dsl.global_table``).
        """
        return self._join(
            other, joiner, window, name, "inner", max_wait_ms, release_on_idle_ms, key
        )

    def left_join(
        self,
        other: Table | GlobalTable | Stream,
        joiner: Callable[[Any, Any], Any],
        *,
        window: JoinWindows | None = None,
        name: str | None = None,
        max_wait_ms: int = 0,
        release_on_idle_ms: int | None = None,
        key: KeyFn | None = None,
    ) -> Stream:
        """Like :meth:`join`, but a record that joins nothing gives ``joiner(value, None)``:
        at once for a table or a global table; for a stream, once its window has closed
        (never earlier)."""
        return self._join(other, joiner, window, name, "left", max_wait_ms, release_on_idle_ms, key)

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
                "or a global table with stream.left_join(table, ...)"
            )
        return self._join(other, joiner, window, name, "outer")

    def _join(
        self,
        other: Table | GlobalTable | Stream,
        joiner: Callable[[Any, Any], Any],
        window: JoinWindows | None,
        name: str | None,
        kind: JoinKind,
        max_wait_ms: int = 0,
        release_on_idle_ms: int | None = None,
        key: KeyFn | None = None,
    ) -> Stream:
        if isinstance(other, GlobalTable):
            waits = bool(max_wait_ms) or release_on_idle_ms is not None
            left = kind == "left"
            return self._of(join_global(self._pipe, other, joiner, key, window, waits, left))
        refuse_key(key, _what(other))
        if isinstance(other, Stream):
            return self._of(joins.join_streams(self._pipe, other._pipe, joiner, window, name, kind))
        if not isinstance(other, Table):
            raise TopologyError(
                f"join({_what(other)}): a stream joins a Table (app.table), a GlobalTable "
                "(app.global_table) or another Stream"
            )
        table = other._side()
        joined = joins.join_table(
            self._pipe, table, joiner, window, name, kind, max_wait_ms, release_on_idle_ms
        )
        return self._of(joined)


def _what(obj: object) -> str:
    if isinstance(obj, Table):
        return f"table {obj.name!r}"
    if isinstance(obj, GlobalTable):
        return f"global table {obj.name!r}"
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
        self._grouped: Pipe | None = None  # shared by every aggregation of this grouping

    def _source(self, aggregation: str) -> Pipe:
        if self._grouped is None:
            self._grouped = grouping.grouped(
                self._stream._pipe, self._name or aggregation, self._key_serde, self._value_serde
            )
        return self._grouped

    def window(
        self,
        windows: Windows,
        *,
        timestamp: TimestampFn | None = None,
        late: Late = "drop",
        retention_ms: int | None = None,
        close_on_idle_ms: int | None = None,
    ) -> WindowedStream[WindowedTable]:
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
        windowing = grouping.Windowing(windows, timestamp, late, retention_ms, close_on_idle_ms)
        return WindowedStream(windowing, self._stream._pipe.root.app, self._source, _windowed)

    def count(self, *, name: str) -> Table:
        """Records per key, kept in store ``name``."""
        return self._aggregate("count", name, grouping.counting())

    def reduce(self, reducer: Callable[[Any, Any], Any], *, name: str) -> Table:
        """``reducer(aggregate, value)``; the first value of a key is its aggregate."""
        return self._aggregate("reduce", name, grouping.reducing(reducer))

    def aggregate(
        self,
        initializer: Callable[[], Any],
        aggregator: Callable[[Any, Any, Any], Any],
        *,
        name: str,
    ) -> Table:
        """``aggregator(key, value, aggregate)``, starting from ``initializer()`` per key."""
        return self._aggregate("aggregate", name, grouping.aggregating(initializer, aggregator))

    def _aggregate(self, label: str, name: str, update: grouping.Update) -> Table:
        app = self._stream._pipe.root.app
        pipe = grouping.aggregate(app, self._source, label, name, update)
        return Table(pipe.root, pipe.node, name, pipe.root.key_serde)


class Table(TableBase):
    """The latest value per key, kept in a store; every update (key, new value) flows on.

    Deletions flow on as tombstones (value None).
    """

    def filter(self, predicate: Callable[[Any, Any], Any], *, name: str | None = None) -> Table:
        """The rows for which ``predicate(key, value)`` holds; a row that stops passing is
        deleted (a None update). ``name`` keeps the result in a store of that name, which a
        join needs."""
        return self._derive("filter", table_ops.filtering(predicate), name)

    def map_values(self, fn: Callable[[Any], Any], *, name: str | None = None) -> Table:
        """``fn(value)`` per row (deletes stay deletes); ``name`` as for :meth:`filter`."""
        return self._derive("map_values", table_ops.mapping_values(fn), name)

    def join(
        self, other: Table, joiner: Joiner, *, name: str, foreign_key: ForeignKey | None = None
    ) -> Table:
        """Inner join with a co-partitioned table by key: ``joiner(value, other_value)`` for
        keys in both, kept in store ``name`` and updated on every change of either. With
        ``foreign_key=fn(value)``, each row joins the row of ``other`` whose key ``fn(value)``
        names, co-partitioned or not (``eokafka.dsl.fk_join``)."""
        return self._join_table(other, joiner, name, "inner", foreign_key)

    def left_join(
        self, other: Table, joiner: Joiner, *, name: str, foreign_key: ForeignKey | None = None
    ) -> Table:
        """Like :meth:`join`, for every key of this table (``other_value`` None if absent)."""
        return self._join_table(other, joiner, name, "left", foreign_key)

    def outer_join(
        self, other: Table, joiner: Joiner, *, name: str, foreign_key: ForeignKey | None = None
    ) -> Table:
        """Like :meth:`join`, for every key of either table (None for the absent side)."""
        return self._join_table(other, joiner, name, "outer", foreign_key)

    def _join_table(
        self,
        other: Table,
        joiner: Joiner,
        name: str | None,
        kind: JoinKind,
        fk: ForeignKey | None = None,
    ) -> Table:
        if isinstance(other, GlobalTable):
            raise TopologyError(
                f"table {METHODS[kind]}({_what(other)}): a table joins a co-partitioned Table "
                "(app.table); a global table is joined from a stream: "
                "stream.join(global_table, fn, key=lambda k, v: ...)"
            )
        if not isinstance(other, Table) or not other.joinable or not self.joinable:
            raise TopologyError(
                f"table {METHODS[kind]}({_what(other)}): a table joins a Table keyed like "
                "itself; join a stream with stream.join(table, ...)"
            )
        return _table(join_tables(self._side(), other._side(), joiner, name, kind, fk), name)

    def _derive(self, label: str, wrap: Wrap, name: str | None) -> Table:
        return _table(table_ops.kept(self._pipe.then(f"{label}(table)", wrap), name), name)

    def to_stream(self) -> Stream:
        """The table's updates as a stream (same processor, no hop; deletes are None)."""
        return Stream._of(self._pipe)


def _table(pipe: Pipe, name: str | None) -> Table:
    return Table(pipe.root, pipe.node, name, pipe.root.key_serde, None, pipe.more)


def _windowed(pipe: Pipe, name: str) -> WindowedTable:
    return WindowedTable(pipe.root, pipe.node, name, WindowedSerde(pipe.root.key_serde))


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
