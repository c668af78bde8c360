"""Stream / Table fluent API, compiled onto plain processors (no runtime machinery of its own).

``stream.py`` holds the fluent classes (``bases.py`` their methods that return no other one),
``sources.py`` the sources they start from (``app.stream``, ``app.table``). Each class wraps a
``pipe.py`` value that the builders take and return: ``joins.py`` a stream's joins,
``grouping.py`` aggregations, ``table_ops.py`` table operators, ``fk_join.py`` foreign-key
joins of tables. ``operators.py``, ``windowed.py``, ``stream_join.py`` and ``asof.py`` hold
the per-record code of each operator, ``graph.py`` the operator tree and the processor that
runs it. The DSL knows an App only as a :class:`~eokafka.dsl.graph.PipelineApp`: an id and a
topology.

How a pipeline compiles:

* Every source (``app.stream``, ``app.table``, each repartition topic) is ONE processor on its
  topic, and a topic has one source: a second ``app.stream``/``app.table``/``app.processor`` on
  it is refused (docs/architecture.md invariant 15). The operators chained after it form a tree of
  closures run inside that processor, so a chain of stateless operators costs function calls,
  not topic hops, and a record's outputs in all branches are all-or-nothing.
* A change of key (``map``, ``flat_map``, ``group_by``) followed by an aggregation or a join
  sends (new key, value) to ``<application id>-<name>-repartition`` inside the transaction; a
  processor registered on that topic does the stateful part, so every key lives on exactly one
  task (docs/architecture.md invariant 9). ``group_by_key()`` on an unchanged key needs no hop.
* Aggregations and tables keep their state in the store called ``name``, changelogged like any
  store; declare its backend with ``app.store(name, backend=...)`` (in memory otherwise).

Names are explicit because they name durable things (stores, changelogs, repartition topics)
and must not shift when the pipeline is edited: aggregations take ``name=`` (their store); the
repartition topic of a grouping is named by ``group_by(..., name=)``/``group_by_key(name=)``,
else by the first aggregation's name; a join after a key change needs ``name=``; a table's store
defaults to its topic's name. Processor names are the pipeline itself, which ``describe()`` shows.

Semantics worth knowing:

* Repartition records carry JSON keys and JSON values unless ``key_serde``/``value_serde`` say
  otherwise. JSON keeps the grouping key's Python type (str, int, ...) across the hop, which a
  String serde would not; it turns tuples into lists.
* Aggregations skip records whose key or value is None (a tombstone is not an input), as Kafka
  Streams does. Aggregates are stored with the store's serde (JSON by default); an aggregate of
  None deletes the key and is emitted as a tombstone.
* ``join`` is an inner join against the table *as it is when the stream record is processed*:
  a record whose key is absent from the table (not loaded yet, deleted, never there) produces
  no output. ``left_join`` passes ``None`` instead. A plain table has no time synchronisation
  with the stream, so load it before streaming against it; a versioned table
  (``app.table(..., history_ms=)``) joins as of each record's time and can wait for the
  table (``asof.py``). The stream and the table topic must
  be co-partitioned (same partition count, keys written with the same serde and partitioner);
  the worker refuses to start on differing partition counts. Repartition records go to the
  partition the producer's partitioner picks: ``murmur2_random`` by default, which puts a key
  where the Java client, Kafka Streams and Connect put it, so a re-keyed stream finds the keys
  of a table they wrote (``config.DEFAULT_PARTITIONER``).
* ``stream.join/left_join(global_table, fn, key=lambda k, v: ...)`` looks each record up
  in a global table (``app.global_table``, ``global_table.py``), which every worker holds in
  full: no co-partitioning, no repartition, the lookup key computed from the record.
* ``stream.join/left_join/outer_join(other_stream, fn, window=JoinWindows(...), name=)`` is a
  windowed join of two streams (``stream_join.py``); its results come from the processors of
  both inputs, as do a ``merge``'s: operators chained on run in each.
* Output serdes default to ``ctx.send``'s rules: bytes, str or None pass, anything else needs
  ``key_serde``/``value_serde``. Outputs keep the input record's timestamp (the event time of
  a timestamp extractor; a join's result time).
"""

from eokafka.dsl.global_table import GlobalTable, global_table_source
from eokafka.dsl.sources import stream_source, table_source
from eokafka.dsl.stream import GroupedStream, Stream, Table, WindowedTable
from eokafka.dsl.windowed_stream import WindowedStream

__all__ = [
    "GlobalTable",
    "GroupedStream",
    "Stream",
    "Table",
    "WindowedStream",
    "WindowedTable",
    "global_table_source",
    "stream_source",
    "table_source",
]
