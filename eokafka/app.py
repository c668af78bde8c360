"""App: the topology registry and the settings a user gives in code."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from eokafka import config
from eokafka.config import Settings
from eokafka.dsl import GlobalTable, Stream, Table, global_table_source, stream_source, table_source
from eokafka.on_error import OnError, check_on_error
from eokafka.record import Record
from eokafka.serdes import Bytes, Json, Serde, String
from eokafka.sink import Sink
from eokafka.source import Feed, SourceConnector
from eokafka.state import BackendKind, StoreSpec, timer_store
from eokafka.timers import InitFn, ProcessorTimers, TimerFn
from eokafka.topology import Processor, Source, Topology

S = TypeVar("S", bound=Sink)


class App:
    """An exactly-once stream processing application.

    The application id is the consumer group id, the transactional.id prefix and the
    prefix of internal topics (``<application id>-dlq``). Keyword arguments are settings
    (see ``eokafka.config.Settings``); environment variables and CLI options override them.
    ``on_error`` is a word (a setting like the others) or a handler (see ``eokafka.on_error``),
    which is code: it stays with the topology, and a word given by the environment or the
    command line does not replace it.
    """

    def __init__(self, application_id: str, **settings: Any) -> None:
        self.application_id = application_id
        self.topology = Topology()
        on_error = settings.get("on_error")
        if on_error is not None and not isinstance(on_error, str):
            check_on_error(on_error, f"App({application_id!r})")
            self.topology.on_error = settings.pop("on_error")
        self._settings = dict(settings)
        config.resolve(application_id, self._settings, env={})  # fail early on bad kwargs

    def processor(
        self,
        topic: str,
        *more_topics: str,
        key_serde: Serde | None = None,
        value_serde: Serde | None = None,
        name: str | None = None,
        stores: list[str] | tuple[str, ...] = (),
        outputs: list[str] | tuple[str, ...] = (),
        on_error: OnError | None = None,
        init: InitFn | None = None,
        on_timer: TimerFn | None = None,
    ) -> Callable[[Processor], Processor]:
        """Register ``fn(record, ctx)`` for every record of the given topics.

        ``stores`` names the state stores the processor uses through ``ctx.store(name)``;
        each input partition gets its own instance, backed by ``<app id>-<store>-changelog``.
        ``outputs`` names the topics it sends to, for ``eokafka describe`` (optional: a
        processor may send anywhere). A topic has one source: a second processor, stream or
        table on it raises TopologyError, so that a record's outputs are all-or-nothing.
        ``on_error`` (a word or a handler, see ``eokafka.on_error``) replaces the app's for
        this processor's records.

        Timers (``eokafka.timers``): ``init(ctx)`` runs once per task and may register
        ``ctx.schedule(...)`` / ``ctx.schedule_at(...)``; with ``on_timer(timer, ctx)`` the
        processor keeps per-key timers (``ctx.timers.set(key, at_ms)``). Either gives the
        processor the store ``<name>-timers``.
        """
        if on_error is not None:
            check_on_error(on_error, f"processor on {topic!r}")

        def register(fn: Processor) -> Processor:
            proc = name or getattr(fn, "__name__", "processor")
            timers = None
            run, uses = fn, tuple(stores)
            if init is not None or on_timer is not None:
                timers = ProcessorTimers(
                    proc, timer_store(proc), init, on_timer, key_serde or Bytes()
                )
                run, uses = timers.wrap(fn), (*uses, timers.store_name)
                self.topology.add_timers(timers)
            for t in (topic, *more_topics):
                self.topology.add_source(
                    Source(
                        name=proc,
                        topic=t,
                        fn=run,
                        key_serde=key_serde or Bytes(),
                        value_serde=value_serde or Bytes(),
                        stores=uses,
                        outputs=tuple(outputs),
                        on_error=on_error,
                        timers=timers,
                    )
                )
            return fn

        return register

    def store(
        self,
        name: str,
        *,
        backend: BackendKind = "memory",
        key_serde: Serde | None = None,
        value_serde: Serde | None = None,
    ) -> None:
        """Declare a store's backend and serdes (defaults: in memory, JSON keys and values)."""
        self.topology.add_store(
            StoreSpec(name, backend, key_serde or Json(), value_serde or Json())
        )

    def sink(self, sink: S) -> S:
        """Register a sink outside Kafka (``connectors.postgres``, ``connectors.files``).

        Processors write to it with ``ctx.sink(sink.name).write(row)``, streams with
        ``stream.to_sink(sink.name)``; its writes become visible exactly when the Kafka
        transaction commits (invariant 12).
        """
        self.topology.add_sink(sink)
        return sink

    def source(
        self,
        connector: SourceConnector,
        topic: str,
        *,
        key_serde: Serde | None = None,
        value_serde: Serde | None = None,
    ) -> None:
        """Feed ``topic`` from outside Kafka (``connectors.files``, ``connectors.postgres``).

        Records and the source's position are committed in one Kafka transaction, the
        position to ``<application id>-source-offsets``; an app with sources runs no
        processors. Values default to JSON, keys to str.
        """
        self.topology.add_feed(
            Feed(connector, topic, key_serde or String(), value_serde or Json())
        )

    def stream(
        self,
        topic: str,
        *,
        key_serde: Serde | None = None,
        value_serde: Serde | None = None,
        timestamp: Callable[[Record], int] | None = None,
        on_error: OnError | None = None,
    ) -> Stream:
        """A fluent stream over ``topic``, compiled onto processors (see ``eokafka.dsl``).

        ``timestamp(record)`` gives each record's event time in epoch ms (default: the record
        timestamp); windows use it, and records sent on (``to``, repartitions) carry it.
        ``on_error`` replaces the app's for this stream's records (see ``eokafka.on_error``).
        """
        if on_error is not None:
            check_on_error(on_error, f"stream on {topic!r}")
        return stream_source(self, topic, key_serde, value_serde, timestamp, on_error)

    def table(
        self,
        topic: str,
        *,
        name: str | None = None,
        key_serde: Serde | None = None,
        value_serde: Serde | None = None,
        history_ms: int | None = None,
    ) -> Table:
        """Materialise ``topic`` into store ``name`` (default: the topic) for stream joins.

        ``history_ms``: keep each key's versions of that long, so that a stream joins the
        value valid at each record's time (see ``eokafka.dsl.asof``).
        """
        return table_source(self, topic, name, key_serde, value_serde, history_ms)

    def global_table(
        self,
        topic: str,
        *,
        name: str | None = None,
        key_serde: Serde | None = None,
        value_serde: Serde | None = None,
        history_ms: int | None = None,
    ) -> GlobalTable:
        """Every worker reads ``topic`` in full (all partitions, read_committed) into an
        in-memory store ``name`` (default: the topic), restored to the topic's end before
        any record is processed and kept current between batches; a tombstone deletes.

        A stream joins it without co-partitioning, looking up a key computed from each
        record: ``stream.join(table, fn, key=lambda k, v: v["customer"])`` (see
        ``eokafka.dsl.global_table``); a processor reads it with ``ctx.store(name)``. The
        topic is its own changelog. ``history_ms`` is refused: global tables keep no history.
        """
        return global_table_source(self, topic, name, key_serde, value_serde, history_ms)

    def settings(self, cli: dict[str, Any] | None = None) -> Settings:
        """The settings in force: App kwargs < EOKAFKA_* environment < CLI options."""
        return config.resolve(self.application_id, self._settings, env=os.environ, cli=cli)

    def run(self, **overrides: Any) -> None:
        """Run the workers in this process (or N child processes) until SIGTERM/SIGINT."""
        from eokafka.runtime.process.supervisor import run_app

        run_app(self.topology, self.settings(overrides))
