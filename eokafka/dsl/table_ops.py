"""Table operators: ``filter``, ``map_values`` and table-table joins (declared by ``Table`` in
``stream.py``), and the store a derived table is kept in.

A table's updates are (key, value) pairs where None deletes the key; these operators keep
that meaning: a value that no longer passes a filter, or a join that no longer matches, is
sent on as a delete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from eokafka.dsl import operators as op
from eokafka.dsl.graph import Emit, Root, Wrap, claim_store, emit_at, record_time
from eokafka.dsl.pipe import Pipe, TablePipe
from eokafka.dsl.stream_join import METHODS
from eokafka.errors import TopologyError

TableJoinKind = Literal["inner", "left", "outer"]


def filtering(predicate: Callable[[Any, Any], Any]) -> Wrap:
    """Updates for which ``predicate(key, value)`` fails become deletes; deletes pass."""

    def wrap(nxt: Emit) -> Emit:
        def emit(key: Any, value: Any, ctx: Any) -> None:
            keep = value is not None and predicate(key, value)
            nxt(key, value if keep else None, ctx)

        return emit

    return wrap


def mapping_values(fn: Callable[[Any], Any]) -> Wrap:
    """``fn(value)`` for every update but deletes."""

    def wrap(nxt: Emit) -> Emit:
        def emit(key: Any, value: Any, ctx: Any) -> None:
            nxt(key, None if value is None else fn(value), ctx)

        return emit

    return wrap


def joining(
    left: str,
    right: str,
    joiner: Callable[[Any, Any], Any],
    kind: TableJoinKind,
    times: str,
    root: Root,
    side: int,
) -> Wrap:
    """After an update of side ``side`` (0 left, 1 right) of the join: the key's joined value
    from both stores as they are now (the update applied), or a delete when the join has none.

    A result carries the later of the update's time and the other side's (as in Kafka
    Streams): store ``times`` keeps each key's [left time, right time] of present values.
    """
    what = f"table join {times!r}"

    def wrap(nxt: Emit) -> Emit:
        def emit(key: Any, value: Any, ctx: Any) -> None:
            ts = record_time(root, what)
            clock = ctx.store(times)
            pair = clock.get(key) or [None, None]
            pair[side] = None if value is None else ts
            if pair == [None, None]:
                clock.delete(key)
            else:
                clock.put(key, pair)
            other = pair[1 - side]
            lv, rv = ctx.store(left).get(key), ctx.store(right).get(key)
            if kind == "inner":
                matched = lv is not None and rv is not None
            elif kind == "left":
                matched = lv is not None
            else:
                matched = lv is not None or rv is not None
            at = ts if other is None or other < ts else other
            emit_at(root, at, nxt, key, joiner(lv, rv) if matched else None, ctx)

        return emit

    return wrap


def kept(pipe: Pipe, name: str | None) -> Pipe:
    """The updates flowing down ``pipe`` kept in store ``name`` if given (a join reads it)."""
    if name is None:
        return pipe
    claim_store(pipe.root.app, name, f"table {name!r}")
    pipe.add_store(name)
    return pipe.then(f"store({name})", op.storing(f"table {name}", name))


def join_by_key(
    left: TablePipe,
    right: TablePipe,
    joiner: Callable[[Any, Any], Any],
    name: str | None,
    kind: TableJoinKind,
) -> Pipe:
    """Two co-partitioned tables joined by key, kept in store ``name``: both tables' processors
    run the join after each update, reading both stores; ``<name>-times`` keeps each side's
    update times, for the results' timestamps."""
    method = METHODS[kind]
    if name is None:
        raise TopologyError(f"table {method} needs name=: the store of the joined table")
    for table in (left, right):
        table.check_stored(f"table {method}")
        if table.history_ms is not None:
            raise TopologyError(
                f"versioned table {table.name!r} joins streams (as of their time) only"
            )
    assert left.name is not None and right.name is not None
    times = claim_store(left.pipe.root.app, f"{name}-times", f"table {method} {name!r}")
    lefts = {id(root) for root, _ in left.pipe.tips()}
    ends = left.pipe.joined(right.pipe)
    for root, _ in ends.tips():
        for store in (left.name, right.name, times):
            root.add_store(store)

    def make(root: Root) -> Wrap:
        side = 0 if id(root) in lefts else 1
        return joining(left.name or "", right.name or "", joiner, kind, times, root, side)

    return kept(ends.then_each(f"{method}({left.name}, {right.name})", make), name)
