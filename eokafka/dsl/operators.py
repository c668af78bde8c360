"""The per-record code of each DSL operator but windows (``windowed.py``).

Each function takes what the operator was declared with and returns its :data:`Wrap`: given
the downstream emit, the operator's own emit. The fluent classes (``stream.py``) hang them on a
source's processor; they run as plain closures, once per record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from eokafka.dsl.graph import MISSING, Emit, Node, Root, Wrap, check_name, sink
from eokafka.errors import TopologyError
from eokafka.serdes import Json, Serde


def mapping(fn: Callable[[Any, Any], tuple[Any, Any]]) -> Wrap:
    def wrap(nxt: Emit) -> Emit:
        def emit(key: Any, value: Any, ctx: Any) -> None:
            k, v = fn(key, value)
            nxt(k, v, ctx)

        return emit

    return wrap


def mapping_values(fn: Callable[[Any], Any]) -> Wrap:
    def wrap(nxt: Emit) -> Emit:
        def emit(key: Any, value: Any, ctx: Any) -> None:
            nxt(key, fn(value), ctx)

        return emit

    return wrap


def filtering(predicate: Callable[[Any, Any], Any]) -> Wrap:
    def wrap(nxt: Emit) -> Emit:
        def emit(key: Any, value: Any, ctx: Any) -> None:
            if predicate(key, value):
                nxt(key, value, ctx)

        return emit

    return wrap


def flat_mapping(fn: Callable[[Any, Any], Iterable[tuple[Any, Any]]]) -> Wrap:
    def wrap(nxt: Emit) -> Emit:
        def emit(key: Any, value: Any, ctx: Any) -> None:
            for k, v in fn(key, value):
                nxt(k, v, ctx)

        return emit

    return wrap


def peeking(fn: Callable[[Any, Any], Any]) -> Wrap:
    def wrap(nxt: Emit) -> Emit:
        def emit(key: Any, value: Any, ctx: Any) -> None:
            fn(key, value)
            nxt(key, value, ctx)

        return emit

    return wrap


def keying(fn: Callable[[Any, Any], Any]) -> Wrap:
    """``group_by``: the new key is ``fn(key, value)``."""

    def wrap(nxt: Emit) -> Emit:
        def emit(key: Any, value: Any, ctx: Any) -> None:
            nxt(fn(key, value), value, ctx)

        return emit

    return wrap


def splitting(predicates: Sequence[Callable[[Any, Any], Any]], default: bool) -> list[Wrap]:
    """``split``: the operator that picks a record's branch, then one per branch.

    The first wrap calls the predicates in order until one holds and notes that branch (the
    default's, or none) for the branch operators below it, which each pass on the records
    of their own branch: every predicate runs at most once per record.
    """
    chosen = [-1]  # one record runs through the branches before the next one is chosen
    fallback = len(predicates) if default else -1

    def choose(nxt: Emit) -> Emit:
        def emit(key: Any, value: Any, ctx: Any) -> None:
            chosen[0] = next(
                (i for i, predicate in enumerate(predicates) if predicate(key, value)), fallback
            )
            nxt(key, value, ctx)

        return emit

    def branch(index: int) -> Wrap:
        def wrap(nxt: Emit) -> Emit:
            def emit(key: Any, value: Any, ctx: Any) -> None:
                if chosen[0] == index:
                    nxt(key, value, ctx)

            return emit

        return wrap

    return [choose, *(branch(i) for i in range(len(predicates) + default))]


def writing_sink(name: str, row: Callable[[Any, Any], Any] | None) -> Wrap:
    """``to_sink``: stage ``row(key, value)`` (default: the value) in the sink ``name``."""

    def wrap(_nxt: Emit) -> Emit:
        if row is None:

            def emit_value(key: Any, value: Any, ctx: Any) -> None:
                ctx.sink(name).write(value)

            return emit_value

        def emit(key: Any, value: Any, ctx: Any) -> None:
            ctx.sink(name).write(row(key, value))

        return emit

    return wrap


def repartition(
    root: Root,
    node: Node,
    name: str,
    key_serde: Serde | None,
    value_serde: Serde | None,
    drop_null_keys: bool,
    more: Sequence[tuple[Root, Node]] = (),
) -> Root:
    """Send what reaches ``node`` (and each node of ``more``: the other processors of a
    joined or merged stream) to ``<application id>-<name>-repartition``; the new source on
    that topic, where the pipeline goes on."""
    app = root.app
    topic = f"{app.application_id}-{check_name('repartition name', name)}-repartition"
    if topic in app.topology.internal_topics:
        raise TopologyError(
            f"repartition topic {topic!r} is declared twice; give each re-keying its own name="
        )
    ks, vs = key_serde or Json(), value_serde or Json()
    app.topology.add_internal_topic(topic, partitions_like=root.like)
    dropped = f"repartition({name}): None key"

    def sending(from_root: Root) -> Wrap:
        send = sink(topic, ks, vs, from_root)

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

        return wrap

    for from_root, from_node in ((root, node), *more):
        from_root.add(from_node, f"repartition({name})", sending(from_root))
    return Root(app, topic, "repartition", ks, vs, like=root.like)


def joining(
    store: str,
    joiner: Callable[[Any, Any], Any],
    left: bool,
    lookup: Callable[[Any, Any], Any] | None = None,
) -> Wrap:
    """``joiner(value, table value)`` for keys in the table's store; ``left``: None if absent.

    The table key is the record's, or ``lookup(key, value)`` (a global table's join)."""

    def wrap(nxt: Emit) -> Emit:
        def emit(key: Any, value: Any, ctx: Any) -> None:
            wanted = key if lookup is None else lookup(key, value)
            found = MISSING if wanted is None else ctx.store(store).get(wanted, MISSING)
            if found is MISSING:
                if not left:
                    return
                found = None
            nxt(key, joiner(value, found), ctx)

        return emit

    return wrap


def aggregating(label: str, name: str, update: Callable[[Any, Any, Any], Any]) -> Wrap:
    """``update(key, value, old aggregate or MISSING)`` into store ``name``; emits the new one."""
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

    return wrap


def storing(topic: str, store: str) -> Wrap:
    """``app.table``: each record's value into ``store`` (a tombstone deletes the key)."""
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

    return wrap
