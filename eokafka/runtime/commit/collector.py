"""The record collector: the only place that produces, and that classes a refused record.

Every record eokafka writes to Kafka goes through here, into the transaction open at the
time of the call: a processor's outputs (``emitter`` for one processing run, ``send``),
changelog records (``changelog``), dead letters (``dead_letter``), and the records and
positions of sources (``produce``, called by source_records.py, which checks them first).
librdkafka's local queue being full (BufferError) is waited out here; a record refused by a
limit known in advance or by produce() is turned into the poison policy's verdict here,
before any other output of its input record is produced.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from eokafka.config import Settings
from eokafka.context import PendingSend
from eokafka.errors import OutputRefusedError
from eokafka.runtime.commit.errors import RecordFailed, must_abort
from eokafka.runtime.commit.limits import OutputLimits
from eokafka.runtime.commit.owner import TransactionOwner
from eokafka.runtime.commit.poison_policy import PoisonPolicy
from eokafka.topology import Source

Report = Callable[[KafkaError | None, Message], None]
_WAIT_S = 0.05  # poll interval while librdkafka's queue is full


class RecordCollector:
    def __init__(
        self,
        settings: Settings,
        owner: TransactionOwner,
        limits: OutputLimits,
        pending: list[PendingSend],
    ) -> None:
        self.settings = settings
        self.owner = owner
        self.limits = limits
        self.pending = pending  # the sends of the record being processed (ctx.pending)
        self.produced = owner.tally.produced

    def emitter(self, poison: PoisonPolicy) -> tuple[Callable[[Message, Source], None],
                                                     Callable[[], None]]:  # fmt: skip
        """``emit(msg, source)`` for the records of one processing run, and ``flush()``
        for its end.

        The common case (one output, no headers, no guarded topic) is produced inline, and
        counted per run of one output topic: a Counter update per record costs more than the
        rest of the bookkeeping. Everything else goes through ``send``. The producer is the
        one of the transaction open now: a run never outlives it.
        """
        pending = self.pending
        guarded = self.limits.guarded
        produce = self.owner.producer.produce
        produced = self.produced
        send = self.send
        run_topic = ""
        run = 0

        def emit(msg: Message, source: Source) -> None:
            nonlocal run_topic, run
            if len(pending) == 1 and not guarded:
                topic, value, key, partition, ts, headers = pending[0]
                if headers is None:
                    if ts is None:
                        ts = msg.timestamp()[1]
                        if ts < 0:
                            ts = 0
                    try:
                        produce(topic, value, key, partition, None, None, ts)
                    except (BufferError, KafkaException):
                        send(msg, source, poison)  # waits, or classifies
                        return
                    pending.clear()
                    if topic != run_topic:
                        if run:
                            produced[run_topic] += run
                        run_topic = topic
                        run = 0
                    run += 1
                    return
            send(msg, source, poison)

        def flush() -> None:
            nonlocal run
            if run:
                produced[run_topic] += run
                run = 0

        return emit, flush

    def send(self, msg: Message, source: Source, poison: PoisonPolicy) -> None:
        """Produce one input record's sends; positional arguments keep produce() cheap.

        Refusals known in advance (limits.py) send the record to the policy before any of
        its outputs is produced, as does a refusal by produce() of its first output: no abort,
        unless the record's store writes must be taken back.
        """
        pending = self.pending
        if self.limits.guarded or len(pending) > 1:
            refused = self.limits.first_refusal(pending)
            if refused is not None:
                pending.clear()
                poison.refused(msg, source.name, bool(source.stores), OutputRefusedError(refused))
                return
        produced = self.produced
        ts: int | None = None
        try:
            for topic, value, key, partition, timestamp, headers in pending:
                if timestamp is None:
                    if ts is None:
                        ts = msg.timestamp()[1]
                        if ts < 0:
                            ts = 0
                    timestamp = ts
                self.produce(topic, value, key, partition, timestamp, headers)
                produced[topic] += 1
        except KafkaException as exc:
            err = exc.args[0]
            if must_abort(err):
                self.owner.note_failure(err)
                raise RecordFailed(err.name(), err.str()) from exc
            first = pending[0]
            if first[:3] == (topic, value, key) and first[3] == partition:
                pending.clear()  # nothing of this record was produced yet
                poison.refused(msg, source.name, bool(source.stores), KafkaException(err))
                return
            if poison.fails(msg.topic()):
                raise poison.error(msg, "produce", exc) from exc
            poison.replay_without(msg, source.name, "produce", KafkaException(err))
        finally:
            pending.clear()

    def changelog(
        self,
        topic: str,
        partition: int,
        records: Mapping[bytes, bytes | None],
        report: Report,
    ) -> int:
        """A store's last write per key into the open transaction; the last record's
        delivery ``report`` carries the offset the store's checkpoint is made of.

        The report goes to produce() positionally (its ``callback``): confluent-kafka parses
        keyword arguments slowly, and this runs for about one changelog record per input.
        A refusal propagates (the commit aborts)."""
        produce = self.owner.producer.produce
        last = len(records) - 1
        for i, (k, v) in enumerate(records.items()):
            done = report if i == last else None
            try:
                produce(topic, v, k, partition, done)
            except BufferError:
                self.produce(topic, v, k, partition, 0, None, done)
        return last + 1

    def dead_letter(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        timestamp: int,
    ) -> None:
        """A dead-letter record; a refusal dooms the transaction (the abort-loop narrowing
        then finds that the record can't even be dead-lettered)."""
        try:
            self.produce(self.settings.dlq_topic, value, key, -1, timestamp, headers)
        except KafkaException as exc:
            self.owner.note_failure(exc.args[0])
            raise RecordFailed(exc.args[0].name(), exc.args[0].str()) from exc

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        partition: int = -1,
        timestamp: int = 0,
        headers: Any = None,
        report: Report | None = None,
    ) -> None:
        """Produce, waiting while librdkafka's local queue is full (a source's records, with
        ``report`` for their delivery; the others above); a refusal propagates."""
        producer = self.owner.producer
        while True:
            try:
                producer.produce(topic, value, key, partition, report, None, timestamp, headers)
                return
            except BufferError:
                producer.poll(_WAIT_S)
