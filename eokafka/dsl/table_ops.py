"""The per-record code of table operators: ``filter``, ``map_values`` and table-table joins
(declared by ``Table`` in ``stream.py``).

A table's updates are (key, value) pairs where None deletes the key; these operators keep
that meaning: a value that no longer passes a filter, or a join that no longer matches, is
sent on as a delete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from eokafka.dsl.graph import Emit, Wrap

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


def joining(left: str, right: str, joiner: Callable[[Any, Any], Any], kind: TableJoinKind) -> Wrap:
    """After an update of either table: the key's joined value from both stores as they are
    now (the update applied), or a delete when the join has none."""

    def wrap(nxt: Emit) -> Emit:
        def emit(key: Any, value: Any, ctx: Any) -> None:
            lv, rv = ctx.store(left).get(key), ctx.store(right).get(key)
            if kind == "inner":
                matched = lv is not None and rv is not None
            elif kind == "left":
                matched = lv is not None
            else:
                matched = lv is not None or rv is not None
            nxt(key, joiner(lv, rv) if matched else None, ctx)

        return emit

    return wrap
