"""Aggregations (count, reduce, aggregate) and tables: the stateful half of the DSL."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from eokafka.dsl.graph import MISSING, Emit, Node, Root, TimestampFn, claim_store, sink
from eokafka.dsl.stream import Stream
from eokafka.serdes import Serde

if TYPE_CHECKING:
    from eokafka.app import App
    from eokafka.dsl.windowed import Late, WindowedStream
    from eokafka.windows import Windows


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
    ) -> WindowedStream:
        """Aggregate per key and event-time window (see ``eokafka.windows``).

        ``timestamp(record)`` gives a record's event time, the record carrying the key and
        value as grouped (default: the source's ``timestamp=``, else the record timestamp).
        ``late`` says what happens to records whose window has closed: ``"drop"`` (counted
        and logged) or ``"dead-letter"`` (to ``<application id>-dlq`` with headers).
        ``retention_ms`` is the window store changelog's (default: the windows' reach + 1 day).
        """
        from eokafka.dsl.windowed import WindowedStream  # builds on this module: import late

        return WindowedStream(self, windows, timestamp, late, retention_ms)

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

        dropped = f"{label}({name}): None key or value"

        def wrap(nxt: Emit) -> Emit:
            def emit(key: Any, value: Any, ctx: Any) -> None:
                if key is None or value is None:
                    ctx.drop(dropped)
                    return
                store = ctx.store(name)
                new = update(key, value, store.get(key, MISSING))
                store.put(key, new)
                nxt(key, new, ctx)

            return emit

        node = root.add(stream._node, f"{label}({name})", wrap)
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
        self._root.add(
            self._node, f"to({topic})", sink(topic, key_serde, value_serde, self._root)
        )

    def to_sink(self, name: str, row: Callable[[Any, Any], Any] | None = None) -> None:
        """Write every update to the sink ``name`` (see ``Stream.to_sink``)."""
        self.to_stream().to_sink(name, row)

    def to_stream(self) -> Stream:
        """The table's updates as a stream (same processor, no hop)."""
        return Stream(self._root, self._node)


def stream_source(
    app: App,
    topic: str,
    key_serde: Serde | None,
    value_serde: Serde | None,
    timestamp: TimestampFn | None = None,
) -> Stream:
    """``app.stream``: a processor on ``topic`` running whatever gets chained to the Stream."""
    root = Root(app, topic, "stream", key_serde, value_serde, timestamp=timestamp)
    return Stream(root, root.node)


def table_source(
    app: App,
    topic: str,
    name: str | None,
    key_serde: Serde | None,
    value_serde: Serde | None,
) -> Table:
    """``app.table``: materialise ``topic`` into store ``name`` (default: the topic's name).

    A None value (tombstone) deletes the key; records with a None key are skipped.
    """
    store = claim_store(app, name or topic, f"table {topic!r}")
    root = Root(app, topic, "table", key_serde, value_serde)
    root.add_store(store)

    dropped = f"table({topic}): None key"

    def wrap(nxt: Emit) -> Emit:
        def emit(key: Any, value: Any, ctx: Any) -> None:
            if key is None:
                ctx.drop(dropped)
                return
            if value is None:
                ctx.store(store).delete(key)
            else:
                ctx.store(store).put(key, value)
            nxt(key, value, ctx)

        return emit

    node = root.add(root.node, f"store({store})", wrap)
    return Table(root, node, store, root.key_serde)
