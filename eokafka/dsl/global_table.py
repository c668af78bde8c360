"""Global tables: ``app.global_table(topic)`` and a stream's join with one.

A global table is read in full by every worker (every partition of its topic, read_committed)
into an in-memory store, restored to the topic's end before any record is processed and kept
current between batches (``eokafka.runtime.process.global_tables``), as Kafka Streams'
GlobalKTable. Its topic is its own changelog: nothing is written for it. So a stream joins it
without co-partitioning: the key to look up is computed from each stream record
(``key=lambda k, v: ...``, Kafka Streams' KeyValueMapper), and no repartition is needed after
a key change.

What a join sees is the table as this worker has read it when the record is processed: the
table is not part of the transaction, so a record processed again after a crash joins the
table as it is then (as in Kafka Streams). Produce the table before the stream records that
need it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eokafka.dsl import operators as op
from eokafka.dsl.graph import PipelineApp, check_name
from eokafka.dsl.pipe import Pipe
from eokafka.errors import TopologyError
from eokafka.serdes import Bytes, Serde
from eokafka.topology import GlobalTable as GlobalTableSpec
from eokafka.windows import JoinWindows

KeyFn = Callable[[Any, Any], Any]


class GlobalTable:
    """A table every worker holds in full; a stream joins it with ``key=`` (see
    :meth:`eokafka.dsl.Stream.join`). It has no operators of its own: its updates are not a
    stream of the app (read its topic with ``app.table`` for that, co-partitioned)."""

    def __init__(self, spec: GlobalTableSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.topic = spec.topic

    def __repr__(self) -> str:
        return f"GlobalTable({self.name!r}, topic={self.topic!r})"


def global_table_source(
    app: PipelineApp,
    topic: str,
    name: str | None,
    key_serde: Serde | None,
    value_serde: Serde | None,
    history_ms: int | None,
) -> GlobalTable:
    """``app.global_table``: the table of ``topic`` in store ``name`` (default: the topic)."""
    if history_ms is not None:
        raise TopologyError(
            f"global table {topic!r} takes no history_ms=: a global table keeps the latest "
            "value per key; for joins as of each record's time declare a versioned, "
            "co-partitioned table: app.table(topic, history_ms=...)"
        )
    store = check_name("store name", name or topic)
    spec = GlobalTableSpec(store, topic, key_serde or Bytes(), value_serde or Bytes())
    app.topology.add_global_table(spec)
    return GlobalTable(spec)


def join_global(
    stream: Pipe,
    table: GlobalTable,
    joiner: Callable[[Any, Any], Any],
    key: KeyFn | None,
    window: JoinWindows | None,
    waits: bool,
    left: bool,
) -> Pipe:
    """A stream's join with a global table: ``joiner(value, table value)`` for the table's
    value at ``key(key, value)``; ``left``: None where there is none. Runs in each processor
    feeding the stream, whatever its key or partitioning."""
    method = "left_join" if left else "join"
    if key is None or not callable(key):
        raise TopologyError(
            f"{method} with global table {table.name!r} needs key=lambda key, value: ... "
            "giving the table key to look up for each stream record"
        )
    if window is not None or waits:
        raise TopologyError(
            f"{method} with global table {table.name!r} takes no window=, max_wait_ms= or "
            "release_on_idle_ms=: each record joins the table's current value at key(key, value)"
        )
    for root, _ in stream.tips():
        root.add_global(table.name)
    label = f"{method}(global {table.name})"
    return stream.then(label, op.joining(table.name, joiner, left, key))



def refuse_key(key: KeyFn | None, what: str) -> None:
    """``key=`` is a global table's: other joins go by the stream's own key."""
    if key is not None:
        raise TopologyError(
            f"join({what}, key=...): key= computes the key to look up in a global table "
            "(app.global_table); a stream joins a co-partitioned table or a stream by its "
            "own key (change it with map first)"
        )
