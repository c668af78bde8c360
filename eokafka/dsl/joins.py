"""Where a stream's joins are declared: with a table by key (``operators.joining``), with a
versioned table as of each record's time (``asof.py``), with another stream in a window
(``stream_join.py``). Each checks what it is given and returns the pipe the results flow
from; ``Stream`` (``stream.py``) has already told a table from a stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eokafka.dsl import operators as op
from eokafka.dsl.asof import AsOfJoin
from eokafka.dsl.graph import claim_store
from eokafka.dsl.pipe import Pipe, TablePipe
from eokafka.dsl.stream_join import JoinKind, StreamJoin
from eokafka.dsl.windowed import DEFAULT_RETENTION_MARGIN_MS
from eokafka.errors import TopologyError
from eokafka.windows import JoinWindows

Joiner = Callable[[Any, Any], Any]


def join_table(
    stream: Pipe,
    table: TablePipe,
    joiner: Joiner,
    window: JoinWindows | None,
    name: str | None,
    kind: JoinKind,
    max_wait_ms: int,
    release_on_idle_ms: int | None = None,
) -> Pipe:
    """A stream's join with a table by key; a versioned table's as of each record's time."""
    left = kind == "left"
    if window is not None:
        raise TopologyError(
            f"join with table {table.name!r} takes no window=: a stream joins a table by "
            "key; JoinWindows are for joins of two streams"
        )
    if not table.joinable:
        raise TopologyError(
            f"table {table.name!r} is windowed: a stream joins tables keyed like itself"
        )
    table.check_stored(f"{'left_join' if left else 'join'} with a table")
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
    if release_on_idle_ms is not None and (
        type(release_on_idle_ms) is not int or release_on_idle_ms <= 0 or not max_wait_ms
    ):
        raise TopologyError(
            f"release_on_idle_ms must be a positive int (ms) or None, not "
            f"{release_on_idle_ms!r}, and it releases records that wait: give max_wait_ms= too"
        )
    if stream.rekeyed:
        if name is None:
            raise TopologyError(
                f"the stream's key changed before its join with table {table.name!r}: give "
                "name= for the repartition topic that puts each key on its table partition"
            )
        stream = stream.repartition(name, table.key_serde, None, drop_null_keys=not left)
    if table.history_ms is not None:
        return _join_as_of(stream, table, joiner, name, left, max_wait_ms, release_on_idle_ms)
    store = table.name
    assert store is not None
    stream.add_store(store)  # opens the table's instance for this partition
    label = f"{'left_join' if left else 'join'}({store})"
    return stream.then(label, op.joining(store, joiner, left))


def _join_as_of(
    stream: Pipe,
    table: TablePipe,
    joiner: Joiner,
    name: str | None,
    left: bool,
    max_wait_ms: int,
    release_on_idle_ms: int | None,
) -> Pipe:
    assert table.history_ms is not None and table.name is not None
    join = AsOfJoin(
        name,
        table.name,
        table.history_ms,
        joiner,
        left,
        max_wait_ms,
        stream.root.key_serde,
        release_on_idle_ms,
    )
    at = table.pipe
    if join.waiting is not None:
        app = stream.root.app
        for store in join.stores[2:]:
            claim_store(app, store, f"the join of {name!r} with table {table.name!r}")
        retention = max_wait_ms + DEFAULT_RETENTION_MARGIN_MS
        app.topology.add_window_store(join.waiting, retention)
        if release_on_idle_ms is not None:
            app.topology.add_idle_window(join.waiting, join)
        for store in join.stores[2:]:
            at.root.add_store(store)
    for root, _ in stream.tips():
        for store in join.stores:
            root.add_store(store)
    ends = stream.then_each(join.label, join.stream_side)
    if join.waiting is None:
        return ends
    released = at.root.add(at.node, f"{join.label} release", join.table_side(at.root))
    return Pipe(ends.root, ends.node, False, (*ends.more, (at.root, released)))


def join_streams(
    left: Pipe,
    right: Pipe,
    joiner: Joiner,
    window: JoinWindows | None,
    name: str | None,
    kind: JoinKind,
) -> Pipe:
    """A windowed join of two streams; a side whose key changed is repartitioned first."""
    join = StreamJoin.declare(left.root.app, name, window, joiner, kind)
    if left.rekeyed:
        serde = None if right.rekeyed else right.root.key_serde
        left = left.repartition(f"{join.name}-left", serde, None, drop_null_keys=True)
    if right.rekeyed:
        right = right.repartition(f"{join.name}-right", left.root.key_serde, None, True)
    join.key_serde = left.root.key_serde
    join.add_stores([root for root, _ in (*left.tips(), *right.tips())])
    ends = left.then_each(join.label("left"), lambda root: join.side(root, True))
    rights = right.then_each(join.label("right"), lambda root: join.side(root, False))
    return ends.joined(rights)
