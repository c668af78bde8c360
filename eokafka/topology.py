"""The graph of an app: which processor reads which topic with which serdes.

The topology knows nothing of Kafka clients; the runtime compiles it into a routing table,
``eokafka.describe`` draws the graph ``topology_graph`` makes of it. One input topic has one
source (docs/architecture.md invariant 15): a record goes to one processor, so its outputs,
store writes and dead letter are all-or-nothing, and a record the poison policy sets aside
is set aside for that one processor. Fan-out happens inside that processor.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from eokafka.errors import TopologyError
from eokafka.on_error import ErrorHandler, OnError
from eokafka.serdes import Bytes, Serde
from eokafka.sink import Sink
from eokafka.source import Feed
from eokafka.state import BackendKind, StoreSpec, changelog_topic, stream_time_store
from eokafka.timers import ProcessorTimers
from eokafka.tracebacks import is_framework, shown_path
from eokafka.windows.definition import Windows

if TYPE_CHECKING:  # drawing is for describe, never a worker's start
    from eokafka.describe import Graph

Processor = Callable[[Any, Any], None]


class IdleCloser(Protocol):
    """A windowed aggregation that closes windows on idle (``window(close_on_idle_ms=)``)."""

    close_on_idle_ms: int | None

    def close_idle(self, ctx: Any, active_ms: int, now_ms: int) -> int | None: ...


def _declared_at() -> str:
    """The line of the app's code that declared a source: the first caller outside eokafka."""
    frame = sys._getframe(1)
    while frame is not None and is_framework(frame.f_code.co_filename):
        frame = frame.f_back
    if frame is None:
        return "an unknown place"
    return f"{shown_path(frame.f_code.co_filename)}:{frame.f_lineno}"


@dataclass(frozen=True)
class Source:
    """The one processor reading one topic."""

    name: str
    topic: str
    fn: Processor
    key_serde: Serde
    value_serde: Serde
    stores: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()  # topics it sends to, where known (describe only)
    on_error: OnError | None = None  # its records' errors (None: the app's on_error)
    timers: ProcessorTimers | None = None  # its timers (eokafka.timers), if it has any
    globals: tuple[str, ...] = ()  # the global tables it reads (describe only)


@dataclass(frozen=True)
class GlobalTable:
    """A table every worker reads in full from ``topic`` (``app.global_table``): all its
    partitions, read_committed, into an in-memory store called ``name`` that processors read
    with ``ctx.store(name)``. The topic is its own changelog; no task owns it."""

    name: str
    topic: str
    key_serde: Serde
    value_serde: Serde


class Topology:
    def __init__(self) -> None:
        self.sources: list[Source] = []
        self.stores: dict[str, StoreSpec] = {}
        # internal topic -> the topic whose partition count it takes (repartition topics)
        self.internal_topics: dict[str, str] = {}
        # window store -> its changelog's retention.ms (windowed aggregations)
        self.window_stores: dict[str, int] = {}
        # window store -> the windows of the aggregation it serves (for queries: which closed)
        self.window_defs: dict[str, Windows] = {}
        # window stores whose stream time another one keeps (a stream join's right buffer)
        self.clockless: set[str] = set()
        # sinks outside Kafka (databases, files), written through ctx.sink(name)
        self.sinks: dict[str, Sink] = {}
        # sources outside Kafka (files, database tables) feeding topics, by connector name
        self.feeds: dict[str, Feed] = {}
        # input topic -> where the app's code declared its source (for the error on a second)
        self.declared_at: dict[str, str] = {}
        # whether processors send to the app's dead-letter topic themselves (late records)
        self.dead_letters = False
        # the app's on_error handler (a word is a setting: Settings.on_error)
        self.on_error: ErrorHandler | None = None
        # timer store -> the timers of the processor it belongs to (eokafka.timers)
        self.timers: dict[str, ProcessorTimers] = {}
        # window store -> its aggregation, where windows close on idle partitions
        self.idle_windows: dict[str, IdleCloser] = {}
        # global tables by name (store name), read in full by every worker
        self.global_tables: dict[str, GlobalTable] = {}

    def add_global_table(self, table: GlobalTable) -> None:
        """A global table; its topic has no other source, its name is no task store's."""
        where = _declared_at()
        if table.topic in self.declared_at:
            raise TopologyError(
                f"global table {table.name!r}: topic {table.topic!r} has already been "
                f"registered by another source (declared at {self.declared_at[table.topic]}); "
                "one input topic has one source: read it as a global table or as a stream/"
                "table, not both"
            )
        if table.name in self.global_tables or any(table.name in s.stores for s in self.sources):
            raise TopologyError(
                f"global table on {table.topic!r}: store {table.name!r} is already used; "
                "give this one its own name="
            )
        self.declared_at[table.topic] = where
        self.global_tables[table.name] = table

    def global_topics(self) -> dict[str, str]:
        """The topic of each global table, by table name."""
        return {name: g.topic for name, g in self.global_tables.items()}

    def add_idle_window(self, store: str, closer: IdleCloser) -> None:
        """A windowed aggregation whose windows close when its partition goes idle."""
        self.idle_windows[store] = closer

    def add_timers(self, timers: ProcessorTimers) -> None:
        """A processor with timers: ``validate`` declares its timer store."""
        if timers.store_name in self.timers:
            raise TopologyError(f"processor {timers.processor!r} is declared twice with timers")
        self.timers[timers.store_name] = timers

    def add_feed(self, feed: Feed) -> None:
        if feed.connector.name in self.feeds:
            raise TopologyError(f"source {feed.connector.name!r} is declared twice")
        self.feeds[feed.connector.name] = feed

    def add_sink(self, sink: Sink) -> None:
        if sink.name in self.sinks and self.sinks[sink.name] is not sink:
            raise TopologyError(f"sink {sink.name!r} is declared twice")
        self.sinks[sink.name] = sink

    def add_internal_topic(self, topic: str, partitions_like: str) -> None:
        """A topic the app creates itself, with as many partitions as ``partitions_like``."""
        self.internal_topics[topic] = partitions_like

    def add_dead_letters(self) -> None:
        """A processor sends to the app's dead-letter topic (``<application id>-dlq``)
        whatever ``on_error`` says: the runtime creates it as it does for ``on_error``."""
        self.dead_letters = True

    def error_policies(self, word: str) -> dict[str, OnError]:
        """Each input topic's ``on_error``: its processor's, else the app's handler, else
        ``word`` (the app's setting)."""
        default: OnError = self.on_error if self.on_error is not None else word  # type: ignore[assignment]
        return {s.topic: s.on_error if s.on_error is not None else default for s in self.sources}

    def may_dead_letter(self, word: str) -> bool:
        """Whether the dead-letter topic may be written: a policy or handler that can send there,
        or processors that do themselves."""
        policies = [word, self.on_error, *self.error_policies(word).values()]
        return self.dead_letters or any(p == "dead-letter" or callable(p) for p in policies)

    def add_window_store(
        self, name: str, retention_ms: int, clock: bool = True, windows: Windows | None = None
    ) -> None:
        """Mark a store as a windowed aggregation's; ``validate`` makes its spec say so, and
        declares the store of its stream time (``eokafka.state.stream_time``) unless
        ``clock`` is False (the store shares another window store's). ``windows``: the
        aggregation's window definition (queries tell from it which windows closed)."""
        self.window_stores[name] = retention_ms
        if windows is not None:
            self.window_defs[name] = windows
        if not clock:
            self.clockless.add(name)

    def add_store(self, spec: StoreSpec) -> None:
        if spec.name in self.stores and self.stores[spec.name] != spec:
            raise TopologyError(f"store {spec.name!r} is declared twice, differently")
        self.stores[spec.name] = spec

    def store_names_by_topic(self) -> dict[str, set[str]]:
        """Which stores each source topic's partitions carry (one store instance per partition)."""
        out: dict[str, set[str]] = {}
        for s in self.sources:
            out.setdefault(s.topic, set()).update(s.stores)
        return out

    def add_source(self, source: Source) -> None:
        """Register the source of ``source.topic``; a second source of one topic is refused.

        Two sources would each see every record of the topic, each with outputs and a poison
        verdict of its own: a record could fail in one and be produced by the other, or be
        dead-lettered twice. Kafka Streams refuses the same ("Topic has already been
        registered by another source").
        """
        where = _declared_at()
        glob = next((g for g in self.global_tables.values() if g.topic == source.topic), None)
        if glob is not None:
            raise TopologyError(
                f"topic {source.topic!r} is read by global table {glob.name!r} (declared at "
                f"{self.declared_at[source.topic]}); processor {source.name!r} (declared at "
                f"{where}) cannot read it too: one input topic has one source. Join the "
                "global table from a stream instead: stream.join(table, fn, key=...)"
            )
        first = next((s for s in self.sources if s.topic == source.topic), None)
        if first is not None:
            raise TopologyError(
                f"topic {source.topic!r} has already been registered by another source: "
                f"processor {first.name!r} (declared at {self.declared_at[source.topic]}) reads "
                f"it, and processor {source.name!r} (declared at {where}) would read it too. "
                "One input topic has one source, so that each input record's outputs are "
                "all-or-nothing and a bad record is dead-lettered once. Read the topic in one "
                "place and fan out there: chain several operations on one app.stream(), send "
                "to several topics from one @app.processor, or take a table's updates as a "
                "stream with app.table(...).to_stream()"
            )
        self.declared_at[source.topic] = where
        self.sources.append(source)

    @property
    def topics(self) -> list[str]:
        return sorted({s.topic for s in self.sources})

    def by_topic(self) -> dict[str, list[Source]]:
        """The source of each topic (a list of one: the runtime's routing table takes lists)."""
        routes: dict[str, list[Source]] = {}
        for s in self.sources:
            routes.setdefault(s.topic, []).append(s)
        return routes

    def validate(self) -> None:
        if self.feeds and self.sources:
            raise TopologyError(
                "an app either runs sources (app.source) or processors, not both: declare "
                "the sources in an app of their own, which feeds the topics the other reads"
            )
        if self.feeds:
            return
        if not self.sources:
            raise TopologyError("the app has no processors: declare one with @app.processor")
        for name, retention in self.window_stores.items():
            spec = self.stores.get(name) or StoreSpec(name, "memory")
            self.stores[name] = replace(spec, window_retention_ms=retention)
            if name not in self.clockless:
                self._add_stream_time_store(name, spec.backend)
        for name, timers in self.timers.items():
            spec = self.stores.get(name) or StoreSpec(name, "memory")
            if spec.timers_of not in (None, timers.processor):
                raise TopologyError(f"store {name!r} keeps the timers of two processors")
            self.stores[name] = StoreSpec(
                name, spec.backend, Bytes(), Bytes(), timers_of=timers.processor
            )
        for s in self.sources:
            for name in s.stores:
                if name in self.global_tables:
                    raise TopologyError(
                        f"processor {s.name!r} declares store {name!r}, which is a global "
                        "table: read it with ctx.store(name) without declaring it in stores="
                    )
                if name not in self.stores:
                    self.add_store(StoreSpec(name, "memory"))

    def _add_stream_time_store(self, window_store: str, backend: BackendKind) -> None:
        """The store of a window store's stream time: its backend, raw bytes, compacted."""
        name = stream_time_store(window_store)
        found = self.stores.get(name)
        if found is not None and found.stream_time_of != window_store:
            raise TopologyError(
                f"store {name!r} is declared by the app, but the windowed aggregation "
                f"{window_store!r} keeps its stream time there: rename one of them"
            )
        users = [s.name for s in self.sources if name in s.stores and window_store not in s.stores]
        if users:
            raise TopologyError(
                f"processor {users[0]!r} uses store {name!r}, where the windowed aggregation "
                f"{window_store!r} keeps its stream time: rename one of them"
            )
        self.stores[name] = StoreSpec(name, backend, Bytes(), Bytes(), stream_time_of=window_store)

    def describe(self, application_id: str | None = None) -> str:
        """The topology as text; changelogs are named when the application id is given.

        :mod:`eokafka.describe` also draws it as Mermaid or Graphviz.
        """
        from eokafka.describe import render

        lines = [render(topology_graph(self, application_id), "text")]
        for name, feed in sorted(self.feeds.items()):
            lines.append(f"source {name} ({feed.connector!r}) -> topic {feed.topic}")
        for name, sink in sorted(self.sinks.items()):
            lines.append(f"sink {name} ({sink!r})")
        return "\n".join(line for line in lines if line)


def topology_graph(
    topology: Topology, application_id: str | None, dead_letter_topic: str | None = None
) -> Graph:
    """The graph of ``topology``; changelog names need the application id.

    ``dead_letter_topic`` is shown when the app's ``on_error`` policy sends there.
    """
    from eokafka.describe import Graph, ProcessorNode, StoreNode

    graph = Graph(application_id, partitions_like=dict(topology.internal_topics))
    late_dlq = f"{application_id}-dlq" if application_id and topology.dead_letters else None
    for topic in topology.internal_topics:
        graph.topics[topic] = "repartition"
    for s in topology.sources:
        if graph.topics.get(s.topic) in (None, "output"):
            graph.topics[s.topic] = "source"
        for name in s.stores:
            if name in graph.stores:
                continue
            spec = topology.stores.get(name, StoreSpec(name))
            changelog = changelog_topic(application_id, name) if application_id else None
            graph.stores[name] = StoreNode(
                name, spec.backend, name in topology.window_stores, changelog
            )
        for out in s.outputs:
            graph.topics.setdefault(out, "output")
        windowed = any(name in topology.window_stores for name in s.stores)
        graph.processors.append(
            ProcessorNode(
                s.name,
                s.topic,
                s.key_serde.name,
                s.value_serde.name,
                s.stores,
                s.outputs,
                dead_letter_topic or (late_dlq if windowed else None),
                None if s.timers is None else s.timers.describe(),
                s.globals,
            )
        )
    for name, table in topology.global_tables.items():
        graph.topics[table.topic] = "global-table"
        graph.stores[name] = StoreNode(name, "memory, global", False, None)
        graph.global_tables[name] = table.topic
    for store in graph.stores.values():
        if store.changelog is not None:
            graph.topics[store.changelog] = "changelog"
    for topic in (dead_letter_topic, late_dlq):
        if topic is not None:
            graph.topics[topic] = "dead-letter"
    return graph
