"""A task's records through the topology: deserialize, call the processor, collect its sends.

The worker loop hands each task its run of a batch (``run``); per record this decodes key
and value, calls the processor of the record's topic with the shared processor context bound
to the task's stores, and hands the record's sends to the record collector. A record that
fails goes to the poison policy; a record set aside by an earlier abort (a poison mark of
its task) goes straight to it. This is the hot path: everything per record stays inline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Message

from eokafka.context import ProcessorContext
from eokafka.errors import EokafkaError
from eokafka.metrics import WorkerMetrics
from eokafka.record import Record
from eokafka.runtime.commit.abort_loop import AbortLoop
from eokafka.runtime.commit.collector import RecordCollector
from eokafka.runtime.commit.owner import TransactionOwner
from eokafka.runtime.commit.poison_policy import PoisonPolicy
from eokafka.runtime.commit.sinks import SinkSet
from eokafka.runtime.tasks.manager import Run
from eokafka.runtime.tasks.task import Task
from eokafka.serdes import Serde, String, is_identity
from eokafka.topology import Source, Topology

Decoder = Callable[[bytes | None], Any] | None
# source, key decoder, value decoder, key as UTF-8 text, value as UTF-8 text
Route = tuple[Source, Decoder, Decoder, bool, bool]


def _decoder(serde: Serde) -> tuple[Decoder, bool]:
    """The call the loop makes for a serde: None for identity serdes and for UTF-8 text,
    which the loop decodes inline (half the cost of String.deserialize's call)."""
    if is_identity(serde):
        return None, False
    if type(serde) is String and serde.name == "String":
        return None, True
    return serde.deserialize, False


def compile_routes(topology: Topology) -> dict[str, list[Route]]:
    """Routing table: per input topic, its sources and how to decode their records."""
    routes: dict[str, list[Route]] = {}
    for topic, sources in topology.by_topic().items():
        routes[topic] = []
        for s in sources:
            (kd, ku), (vd, vu) = _decoder(s.key_serde), _decoder(s.value_serde)
            routes[topic].append((s, kd, vd, ku, vu))
    return routes


def serde_error(source: Source, msg: Message, exc: Exception) -> Exception:
    """The error a record that failed to decode is handed on with: its serdes' own (the
    inline UTF-8 decoding's UnicodeDecodeError becomes String's SerdeError), else ``exc``."""
    try:
        source.key_serde.deserialize(msg.key())
        source.value_serde.deserialize(msg.value())
    except Exception as own:
        return own
    return exc


def processors_of(topology: Topology) -> Callable[[str], str]:
    """The names of a topic's processors, as a dead-letter header names them."""
    names = {t: ",".join(s.name for s in sources) for t, sources in topology.by_topic().items()}
    return lambda topic: names.get(topic, "")


class Processing:
    def __init__(
        self,
        topology: Topology,
        ctx: ProcessorContext,
        owner: TransactionOwner,
        collector: RecordCollector,
        poison: PoisonPolicy,
        sinks: SinkSet,
        abort_loop: AbortLoop,
        metrics: WorkerMetrics,
        consumer_error: Callable[[Message], None],
    ) -> None:
        self.routes = compile_routes(topology)
        self.ctx = ctx
        self.owner = owner
        self.collector = collector
        self.poison = poison
        self.sinks = sinks
        self.abort_loop = abort_loop
        self.metrics = metrics
        self.consumer_error = consumer_error
        # a failed record's store writes: replay without it, unless its error stops the worker
        self.replays = {topic: not poison.fails(topic) for topic in self.routes}

    def batch(self, runs: list[Run]) -> None:
        """Process a consumed batch, cut into its tasks' runs."""
        started = time.perf_counter()
        if self.abort_loop.cap is not None:
            for _, _, msgs in runs:
                self.abort_loop.note(msgs)
        emit, flush = self.collector.emitter(self.poison)
        consumed = self.owner.tally.consumed
        records = 0
        try:
            for task, topic, msgs in runs:
                if task is None:
                    self._errors(msgs)
                    continue
                done = self.run(task, topic, msgs, emit)
                if done:
                    consumed[topic] += done
                    records += done
        finally:
            flush()
        self.owner.records += records
        if records:
            self.metrics.processing_latency.observe((time.perf_counter() - started) / records)
            ts = runs[0][2][0].timestamp()[1]
            if ts > 0:
                self.metrics.e2e_latency.observe(max(0.0, time.time() - ts / 1000))

    def _errors(self, msgs: list[Message]) -> None:
        """Error events (and records of an input this worker no longer has: dropped, they
        are not in any commit's offsets)."""
        for msg in msgs:
            if msg.error() is not None:
                self.consumer_error(msg)

    def run(
        self, task: Task, topic: str, msgs: list[Message], emit: Callable[[Message, Source], None]
    ) -> int:
        """One task's run of records; returns how many records (not error events) it held."""
        ctx = self.ctx
        pending = ctx.pending
        poison = self.poison
        marks = task.marks
        stateful = bool(task.stores)
        staged = self.sinks.staged
        replays = self.replays[topic]
        ctx.bind(task.index, task.stores)
        new_record = object.__new__
        sources = self.routes[topic]
        n = len(msgs)
        for msg in msgs:
            if msg.error() is not None:
                n -= 1
                self.consumer_error(msg)
                continue
            if marks:
                mark = marks.get((topic, task.index, msg.offset()))
                if mark is not None:
                    poison.apply(msg, *mark)
                    continue
            for source, kd, vd, ku, vu in sources:
                try:
                    key = msg.key()
                    if kd is not None:
                        key = kd(key)
                    elif ku and key is not None:
                        key = key.decode()
                    value = msg.value()
                    if vd is not None:
                        value = vd(value)
                    elif vu and value is not None:
                        value = value.decode()
                except Exception as exc:
                    poison.apply(msg, source.name, "deserialize", serde_error(source, msg, exc))
                    continue
                # Record(key, value, msg) without the call of its __init__: 50 ns a record
                record = new_record(Record)
                record.key = key
                record.value = value
                record._msg = msg
                try:
                    source.fn(record, ctx)
                except EokafkaError:
                    pending.clear()
                    raise
                except Exception as exc:
                    pending.clear()
                    staged.clear()
                    if stateful and source.stores and replays:
                        # Its store writes can't be taken back alone: replay without it.
                        poison.replay_without(msg, source.name, "process", exc)
                    poison.apply(msg, source.name, "process", exc)
                    continue
                if pending:
                    emit(msg, source)
                if staged:
                    self.sinks.accept(msg)
        return n
