"""What a processor is handed besides the record: the way to send output."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from eokafka.errors import TopologyError
from eokafka.serdes import Serde
from eokafka.sink import SinkWriter
from eokafka.state import Store

Header = tuple[str, bytes | str | None]
# topic, value, key, partition (-1: the partitioner's choice), timestamp, headers
PendingSend = tuple[str, bytes | None, bytes | None, int, int | None, list[Header] | None]


def _as_bytes(obj: Any, what: str, topic: str) -> bytes | None:
    if obj is None or isinstance(obj, bytes):
        return obj
    if isinstance(obj, str):
        return obj.encode()
    if isinstance(obj, bytearray | memoryview):
        return bytes(obj)
    raise TypeError(
        f"ctx.send to {topic!r}: {what} of type {type(obj).__name__} needs a {what}_serde "
        f"(e.g. {what}_serde=serdes.Json())"
    )


@dataclass(frozen=True)
class Timer:
    """What a timer callback gets (eokafka.timers): ``key`` (None for a schedule), the time
    it was due at (ms; stream time or epoch wall clock, by ``kind``), the schedule's ``name``."""

    key: Any
    time: int
    kind: str
    name: str | None = None


TimerFn = Callable[[Timer, "ProcessorContext"], None]


class TimerScope(Protocol):
    """What ``ctx.timers`` and ``ctx.schedule`` reach while a processor with timers runs."""

    def schedule(self, interval_ms: int, fn: TimerFn, kind: str = ...) -> None: ...

    def schedule_at(
        self, at_ms: int, fn: TimerFn, kind: str = ..., name: str | None = ...
    ) -> None: ...

    def set(self, key: Any, at_ms: int, kind: str = ...) -> None: ...

    def cancel(self, key: Any) -> None: ...

    def get(self, key: Any) -> Timer | None: ...


class ProcessorContext:
    """Collects a record's sends; the worker produces them only if the processor returns.

    Buffering per record keeps a record's outputs all-or-nothing, so skipping or
    dead-lettering a record that raised half-way sends none of its partial output.
    """

    __slots__ = (
        "pending", "partition", "dropped", "late", "_known_topics", "_check_topic", "_stores",
        "_sinks", "_writers", "_timers", "_globals",
    )

    def __init__(
        self,
        check_topic: Callable[[str], None],
        dropped: Counter[str] | None = None,
        late: Counter[tuple[str, str]] | None = None,
    ) -> None:
        """``check_topic(topic)`` runs at the first send to a topic (it exists, its limits)."""
        self.pending: list[PendingSend] = []
        self.partition = -1  # the partition index of the task whose records run now
        self.dropped: Counter[str] = Counter() if dropped is None else dropped
        self.late: Counter[tuple[str, str]] = Counter() if late is None else late
        self._known_topics: set[str] = set()
        self._check_topic = check_topic
        self._stores: Mapping[str, Store] = {}
        self._sinks: Callable[[str], SinkWriter | None] = lambda _name: None
        self._writers: dict[str, SinkWriter] = {}
        self._timers: TimerScope | None = None
        self._globals: Mapping[str, Store] = {}

    def bind(self, partition: int, stores: Mapping[str, Store]) -> None:
        """The runtime runs a task's records: its partition index and its open stores."""
        self.partition = partition
        self._stores = stores

    def bind_globals(self, stores: Mapping[str, Store]) -> None:
        """The app's global tables (``app.global_table``), read by every task's records."""
        self._globals = stores

    def known(self, topic: str) -> None:
        """A topic the runtime checked itself (the dead-letter topic): no check at send."""
        self._known_topics.add(topic)

    def bind_sinks(self, writer: Callable[[str], SinkWriter | None]) -> None:
        """Where ``sink(name)`` finds the app's sinks (the runtime binds its sink set)."""
        self._sinks = writer
        self._writers.clear()

    def sink(self, name: str) -> SinkWriter:
        """The named sink (registered with ``app.sink(...)``), written inside the transaction.

        ``ctx.sink("totals").write(row)`` checks the row at once and stages it; it is
        written only if the processor returns, and made visible only with the Kafka commit.
        """
        writer = self._writers.get(name)
        if writer is None:
            writer = self._sinks(name)
            if writer is None:
                raise TopologyError(
                    f"ctx.sink({name!r}): no sink of that name; add it with app.sink(...)"
                )
            self._writers[name] = writer
        return writer

    def drop(self, reason: str) -> None:
        """Count a record a topology chose not to use (e.g. a None key before an aggregation).

        Drops are counted per transaction and reported, by reason, in the log and in
        ``eokafka_records_dropped_total`` when it commits, so that no record vanishes unseen.
        """
        self.dropped[reason] += 1

    def late_record(self, store: str, action: str) -> None:
        """Count a record that came after its window closed (``action``: what became of it).

        Counted per transaction, into ``eokafka_late_records_total`` when it commits.
        """
        self.late[(store, action)] += 1

    def store(self, name: str) -> Store:
        """The named store of the current record's partition (declared with stores=[...]),
        or the global table of that name (``app.global_table``; read-only, not declared)."""
        found = self._stores.get(name)
        if found is None:
            found = self._globals.get(name)
        if found is None:
            raise TopologyError(
                f"ctx.store({name!r}): store {name!r} is not available on partition "
                f"{self.partition}: declare it on the processor (@app.processor(..., "
                "stores=[...]))"
            )
        return found

    def send(
        self,
        topic: str,
        key: Any = None,
        value: Any = None,
        *,
        key_serde: Serde | None = None,
        value_serde: Serde | None = None,
        headers: list[Header] | None = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> None:
        """Send one record inside the current transaction.

        Without a serde, key and value must be bytes, str (UTF-8) or None. The timestamp
        defaults to the input record's.
        """
        if topic not in self._known_topics:
            self._check_topic(topic)
            self._known_topics.add(topic)
        if key_serde is not None:
            key = key_serde.serialize(key)
        elif key is not None and key.__class__ is not bytes:
            key = key.encode() if key.__class__ is str else _as_bytes(key, "key", topic)
        if value_serde is not None:
            value = value_serde.serialize(value)
        elif value is not None and value.__class__ is not bytes:
            value = value.encode() if value.__class__ is str else _as_bytes(value, "value", topic)
        self.pending.append(
            (topic, value, key, -1 if partition is None else partition, timestamp, headers)
        )

    # -- timers (eokafka.timers) -------------------------------------------------------------

    @contextmanager
    def timer_scope(self, scope: TimerScope) -> Iterator[None]:
        """The runtime of a processor with timers: what ``timers`` and ``schedule`` reach."""
        outer, self._timers = self._timers, scope
        try:
            yield
        finally:
            self._timers = outer

    def _timer_scope(self, call: str) -> TimerScope:
        if self._timers is None:
            raise TopologyError(
                f"{call}: timers are for processors declared with them: "
                "@app.processor(topic, init=setup, on_timer=fn), and only while one runs"
            )
        return self._timers

    @property
    def timers(self) -> TimerScope:
        """The processor's per-key timers: ``set(key, at_ms, kind=...)``, ``cancel(key)``,
        ``get(key)``; each fires the processor's ``on_timer(timer, ctx)`` once."""
        return self._timer_scope("ctx.timers")

    def schedule(self, interval_ms: int, fn: TimerFn, kind: str = "stream-time") -> None:
        """Call ``fn(timer, ctx)`` every ``interval_ms`` of ``kind`` time ("stream-time" or
        "wall-clock"), on every task of the processor; only from its ``init`` function."""
        self._timer_scope("ctx.schedule(...)").schedule(interval_ms, fn, kind)

    def schedule_at(
        self, at_ms: int, fn: TimerFn, kind: str = "stream-time", name: str | None = None
    ) -> None:
        """Call ``fn(timer, ctx)`` once per task when ``kind`` time reaches ``at_ms``; only
        from the processor's ``init`` function. Fired once, kept in the timer store."""
        self._timer_scope("ctx.schedule_at(...)").schedule_at(at_ms, fn, kind, name)
