"""The sources a pipeline starts from: ``app.stream`` and ``app.table`` on a topic."""

from __future__ import annotations

from eokafka.dsl import operators as op
from eokafka.dsl.asof import storing_versions
from eokafka.dsl.graph import PipelineApp, Root, TimestampFn, claim_store
from eokafka.dsl.stream import Stream, Table
from eokafka.errors import TopologyError
from eokafka.on_error import OnError
from eokafka.serdes import Bytes, Serde
from eokafka.state import StoreSpec, stream_time_store


def stream_source(
    app: PipelineApp,
    topic: str,
    key_serde: Serde | None,
    value_serde: Serde | None,
    timestamp: TimestampFn | None = None,
    on_error: OnError | None = None,
) -> Stream:
    """``app.stream``: a processor on ``topic`` running whatever gets chained to the Stream."""
    root = Root(app, topic, "stream", key_serde, value_serde, timestamp=timestamp)
    if on_error is not None:
        root.set_on_error(on_error)
    return Stream(root, root.node)


def table_source(
    app: PipelineApp,
    topic: str,
    name: str | None,
    key_serde: Serde | None,
    value_serde: Serde | None,
    history_ms: int | None = None,
) -> Table:
    """``app.table``: materialise ``topic`` into store ``name`` (default: the topic's name).

    A None value (tombstone) deletes the key; records with a None key are skipped. With
    ``history_ms`` the table is versioned (``eokafka.dsl.asof``).
    """
    store = claim_store(app, name or topic, f"table {topic!r}")
    root = Root(app, topic, "table", key_serde, value_serde)
    root.add_store(store)
    if history_ms is None:
        node = root.add(root.node, f"store({store})", op.storing(topic, store))
        return Table(root, node, store, root.key_serde)
    if type(history_ms) is not int or history_ms <= 0:
        raise TopologyError(f"table {topic!r}: history_ms must be an int > 0, not {history_ms!r}")
    clock = claim_store(app, stream_time_store(store), f"table {topic!r} time")
    app.topology.add_store(StoreSpec(clock, "memory", Bytes(), Bytes(), stream_time_of=store))
    root.add_store(clock)
    wrap = storing_versions(topic, store, history_ms, root)
    node = root.add(root.node, f"store({store}, history {history_ms} ms)", wrap)
    return Table(root, node, store, root.key_serde, history_ms)
