"""One input record's outputs into the open transaction, and what a refused produce() means.

The worker's loop produces an input's single plain output itself, because that is the hot
path; every other output, and any produce() of that one that raises, comes here, as do the
dead-letter and changelog records that find librdkafka's local queue full.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException, Message

from eokafka.config import Settings
from eokafka.context import PendingSend
from eokafka.errors import OutputRefusedError
from eokafka.metrics import TxnTally
from eokafka.runtime.abort_loop import must_abort
from eokafka.runtime.limits import OutputLimits
from eokafka.runtime.poison_policy import PoisonPolicy, RecordFailed
from eokafka.runtime.transactions import Transactions
from eokafka.topology import Source


class Outputs:
    """Produces through the producer of the transaction open at the time of the call."""

    def __init__(
        self,
        settings: Settings,
        pending: list[PendingSend],
        limits: OutputLimits,
        tally: TxnTally,
        txn: Callable[[], Transactions],
    ) -> None:
        self.settings = settings
        self.pending = pending
        self.limits = limits
        self.produced = tally.produced
        self._txn = txn

    def send(self, msg: Message, source: Source, poison: PoisonPolicy) -> None:
        """Produce one record's sends; positional arguments keep produce() cheap.

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
        txn = self._txn()
        produce = txn.producer.produce
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
                try:
                    if headers is None:
                        produce(topic, value, key, partition, None, None, timestamp)
                    else:
                        produce(topic, value, key, partition, None, None, timestamp, headers)
                except BufferError:
                    self.produce(topic, value, key, partition, timestamp, headers)
                produced[topic] += 1
        except KafkaException as exc:
            err = exc.args[0]
            if must_abort(err):
                txn.note_failure(err)
                raise RecordFailed(err.name(), err.str()) from exc
            first = pending[0]
            if first[:3] == (topic, value, key) and first[3] == partition:
                pending.clear()  # nothing of this record was produced yet
                poison.refused(msg, source.name, bool(source.stores), KafkaException(err))
                return
            if self.settings.on_error == "fail":
                raise poison.error(msg, "produce", exc) from exc
            poison.replay_without(msg, source.name, "produce", KafkaException(err))
        finally:
            pending.clear()

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        partition: int,
        timestamp: int = 0,
        headers: Any = None,
        on_delivery: Any = None,
    ) -> None:
        """Produce, waiting while librdkafka's local queue is full."""
        producer = self._txn().producer
        while True:
            try:
                producer.produce(
                    topic, value, key, partition, on_delivery, None, timestamp, headers
                )
                return
            except BufferError:
                producer.poll(0.05)
