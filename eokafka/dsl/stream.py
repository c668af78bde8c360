"""Stream: stateless operators fused into their source's processor; re-keying; joins."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from eokafka.dsl.graph import MISSING, Emit, Node, Root, Wrap, check_name, sink
from eokafka.errors import TopologyError
from eokafka.serdes import Json, Serde

if TYPE_CHECKING:
    from eokafka.dsl.table import GroupedStream, Table


def _grouped(
    stream: Stream, name: str | None, key_serde: Serde | None, value_serde: Serde | None
) -> GroupedStream:
    from eokafka.dsl.table import GroupedStream  # table.py builds on Stream: import late

    return GroupedStream(stream, name, key_serde, value_serde)


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

        def wrap(nxt: Emit) -> Emit:
            def emit(key: Any, value: Any, ctx: Any) -> None:
                k, v = fn(key, value)
                nxt(k, v, ctx)

            return emit

        return self._then("map", wrap, rekeys=True)

    def map_values(self, fn: Callable[[Any], Any]) -> Stream:
        """``fn(value) -> new_value``; keeps the key, so no repartition follows."""

        def wrap(nxt: Emit) -> Emit:
            def emit(key: Any, value: Any, ctx: Any) -> None:
                nxt(key, fn(value), ctx)

            return emit

        return self._then("map_values", wrap)

    def filter(self, predicate: Callable[[Any, Any], Any]) -> Stream:
        """Keep the records for which ``predicate(key, value)`` is true."""

        def wrap(nxt: Emit) -> Emit:
            def emit(key: Any, value: Any, ctx: Any) -> None:
                if predicate(key, value):
                    nxt(key, value, ctx)

            return emit

        return self._then("filter", wrap)

    def flat_map(self, fn: Callable[[Any, Any], Iterable[tuple[Any, Any]]]) -> Stream:
        """``fn(key, value) -> iterable of (key, value)``; zero, one or many records out."""

        def wrap(nxt: Emit) -> Emit:
            def emit(key: Any, value: Any, ctx: Any) -> None:
                for k, v in fn(key, value):
                    nxt(k, v, ctx)

            return emit

        return self._then("flat_map", wrap, rekeys=True)

    def peek(self, fn: Callable[[Any, Any], Any]) -> Stream:
        """Call ``fn(key, value)`` for its side effect; it runs again if a batch is replayed."""

        def wrap(nxt: Emit) -> Emit:
            def emit(key: Any, value: Any, ctx: Any) -> None:
                fn(key, value)
                nxt(key, value, ctx)

            return emit

        return self._then("peek", wrap)

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

        def wrap(_nxt: Emit) -> Emit:
            if row is None:

                def emit_value(key: Any, value: Any, ctx: Any) -> None:
                    ctx.sink(name).write(value)

                return emit_value

            def emit(key: Any, value: Any, ctx: Any) -> None:
                ctx.sink(name).write(row(key, value))

            return emit

        self._then(f"to_sink({name})", wrap)

    # -- re-keying and state -------------------------------------------------------------

    def repartition(
        self, name: str, *, key_serde: Serde | None = None, value_serde: Serde | None = None
    ) -> Stream:
        """Route records by their current key through ``<application id>-<name>-repartition``."""
        return self._repartition(name, key_serde, value_serde, drop_null_keys=False)

    def _repartition(
        self, name: str, key_serde: Serde | None, value_serde: Serde | None, drop_null_keys: bool
    ) -> Stream:
        app = self._root.app
        topic = f"{app.application_id}-{check_name('repartition name', name)}-repartition"
        if topic in app.topology.internal_topics:
            raise TopologyError(
                f"repartition topic {topic!r} is declared twice; give each re-keying its own name="
            )
        ks, vs = key_serde or Json(), value_serde or Json()
        app.topology.add_internal_topic(topic, partitions_like=self._root.like)
        send = sink(topic, ks, vs, self._root)

        dropped = f"repartition({name}): None key"

        def wrap(nxt: Emit) -> Emit:
            emit = send(nxt)
            if not drop_null_keys:
                return emit

            def emit_keyed(key: Any, value: Any, ctx: Any) -> None:
                if key is None:  # an aggregation would drop it on the other side
                    ctx.drop(dropped)
                else:
                    emit(key, value, ctx)

            return emit_keyed

        self._then(f"repartition({name})", wrap)
        root = Root(app, topic, "repartition", ks, vs, like=self._root.like)
        return Stream(root, root.node)

    def group_by_key(
        self,
        *,
        name: str | None = None,
        key_serde: Serde | None = None,
        value_serde: Serde | None = None,
    ) -> GroupedStream:
        """Group by the current key; repartitions (named ``name``) only after a key change."""
        return _grouped(self, name, key_serde, value_serde)

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

        def wrap(nxt: Emit) -> Emit:
            def emit(key: Any, value: Any, ctx: Any) -> None:
                nxt(fn(key, value), value, ctx)

            return emit

        return _grouped(self._then("group_by", wrap, rekeys=True), name, key_serde, value_serde)

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

        def wrap(nxt: Emit) -> Emit:
            def emit(key: Any, value: Any, ctx: Any) -> None:
                found = MISSING if key is None else ctx.store(store).get(key, MISSING)
                if found is MISSING:
                    if not left:
                        return
                    found = None
                nxt(key, joiner(value, found), ctx)

            return emit

        return stream._then(f"{'left_join' if left else 'join'}({store})", wrap)
