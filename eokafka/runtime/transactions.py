"""The transactional producer and the state of the open transaction, in one place.

Error classes follow librdkafka's transactional API: retriable errors are retried until the
transaction timeout; abortable errors abort (the caller rewinds); fatal errors drop the
producer and start a new one, whose ``init_transactions`` aborts whatever the old one left
open. A fenced producer is fatal too, with two causes librdkafka reports alike: a newer worker
with the same transactional.id (then this one must stop rather than fence it back, or the two
would fence each other for ever), or the broker aborting a transaction that outlived
``transaction.timeout.ms`` (then a new producer carries on). The worker tells them apart by
asking the consumer group who holds this instance id (``replaced``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from eokafka.config import Settings, producer_config
from eokafka.errors import FencedError
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.clients import KAFKA, Clients

log = logging.getLogger("eokafka.transactions")
T = TypeVar("T")

_FENCED_CODES = frozenset(
    code
    for code in (
        getattr(KafkaError, "_FENCED", None),
        getattr(KafkaError, "PRODUCER_FENCED", None),
        getattr(KafkaError, "INVALID_PRODUCER_EPOCH", None),
        getattr(KafkaError, "FENCED_INSTANCE_ID", None),
    )
    if code is not None
)
_RETRY_BACKOFF = 0.05


def is_fenced(err: KafkaError) -> bool:
    return err.code() in _FENCED_CODES and (err.fatal() or not err.txn_requires_abort())


class TransactionAborted(Exception):
    """The open transaction is gone (aborted, or dropped with its producer): rewind."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Transactions:
    def __init__(
        self,
        settings: Settings,
        instance_id: str,
        metrics: WorkerMetrics,
        stateful: bool = False,
        replaced: Callable[[], bool] = lambda: True,
        clients: Clients = KAFKA,
    ) -> None:
        self._clients = clients
        self._conf = producer_config(settings, instance_id)
        if stateful:
            # Changelog checkpoints need the offsets of successful deliveries; a global
            # callback would then run in Python for every record, so there is none.
            self._conf["delivery.report.only.error"] = False
        else:
            self._conf["on_delivery"] = self._on_delivery_error
        self.transactional_id: str = self._conf["transactional.id"]
        self._timeout = settings.transaction_timeout_ms / 1000
        self._interval = settings.commit_interval_ms / 1000
        self._metrics = metrics
        self._replaced = replaced
        self.open = False
        self.began = 0.0
        self.deadline = 0.0
        self.delivery_failure: str | None = None
        # The first error that doomed the open transaction, kept past its abort for the
        # abort-loop detector, which takes it (take_failure).
        self.failure: KafkaError | None = None
        self.producer = self._new_producer()

    def _on_delivery_error(self, err: KafkaError | None, msg: Any) -> None:
        # Called for failures only (delivery.report.only.error); the commit then fails too.
        if err is not None and self.delivery_failure is None:
            self.delivery_failure = (
                f"delivery to {msg.topic()}[{msg.partition()}] failed: {err.name()}: {err.str()}"
            )
            self.note_failure(err)

    def note_failure(self, err: KafkaError) -> None:
        """Keep the first error of the open transaction: later ones (_STATE) only follow it."""
        if self.failure is None:
            self.failure = err

    def take_failure(self) -> KafkaError | None:
        failure, self.failure = self.failure, None
        return failure

    def _new_producer(self) -> Producer:
        producer = self._clients.producer(self._conf)
        self._retry(lambda: producer.init_transactions(self._timeout * 3), "init_transactions")
        log.info("transactional producer ready: transactional.id=%s", self.transactional_id)
        return producer

    def _retry(self, op: Callable[[], T], what: str) -> T:
        give_up = time.monotonic() + self._timeout
        while True:
            try:
                return op()
            except KafkaException as exc:
                err = exc.args[0]
                if not err.retriable() or time.monotonic() >= give_up:
                    raise
                log.warning("%s: retriable error %s, retrying", what, err.name())
                time.sleep(_RETRY_BACKOFF)

    def begin(self) -> None:
        if not self.open:
            self.producer.begin_transaction()
            self.open = True
            self.began = self._clients.clock()
            self.deadline = self.began + self._interval

    def commit(self, offsets: list[TopicPartition], group_metadata: object) -> None:
        """Commit outputs and consumed offsets together; raise TransactionAborted if not."""
        started = time.perf_counter()
        producer = self.producer
        try:
            if offsets:
                self._retry(
                    lambda: producer.send_offsets_to_transaction(
                        offsets, group_metadata, self._timeout
                    ),
                    "send_offsets_to_transaction",
                )
            self._retry(lambda: producer.commit_transaction(self._timeout), "commit_transaction")
        except KafkaException as exc:
            self.fail(exc.args[0], "commit")
        self.open = False
        self._metrics.commit_latency.observe(time.perf_counter() - started)

    def abort(self, reason: str) -> None:
        """Abort the open transaction (if any); outputs of its records are never read."""
        if not self.open:
            return
        try:
            self._retry(lambda: self.producer.abort_transaction(self._timeout), "abort")
        except KafkaException as exc:
            err = exc.args[0]
            if is_fenced(err) and self._replaced():
                raise self._fenced(err) from exc
            self._reset(err, self._fenced_detail(err))
        self.open = False
        self.delivery_failure = None
        self._metrics.aborts.labels(reason).inc()
        log.info("transaction aborted (%s)", reason)

    def fail(self, err: KafkaError, during: str) -> None:
        """Deal with a transactional error by class, then raise TransactionAborted."""
        self.note_failure(err)
        fenced = is_fenced(err)
        if fenced and self._replaced():
            raise self._fenced(err)
        detail = f"{during}: {err.name()}: {err.str()}"
        if self.delivery_failure:
            detail += f" ({self.delivery_failure})"
        if err.txn_requires_abort() and not fenced:
            log.warning("abortable transaction error, aborting: %s", detail)
            self.abort(err.name())
        else:
            self._reset(err, self._fenced_detail(err) if fenced else "")
            self.open = False
            self._metrics.aborts.labels(err.name()).inc()
        raise TransactionAborted(detail)

    def _fenced_detail(self, err: KafkaError) -> str:
        if not is_fenced(err):
            return ""
        age = self._clients.clock() - self.began if self.open else 0.0
        return (
            f" (no other worker holds this instance id, so the broker most likely aborted a "
            f"transaction that was open {age:.1f} s, longer than transaction_timeout_ms="
            f"{self._timeout * 1000:.0f}: raise it if processing a batch can take this long)"
        )

    def _reset(self, err: KafkaError, why: str = "") -> None:
        log.error(
            "fatal producer error %s: %s%s; creating a new producer", err.name(), err.str(), why
        )
        try:
            self.producer.purge(in_queue=True, in_flight=True, blocking=False)
        except KafkaException:
            pass
        self.producer = self._new_producer()
        self.delivery_failure = None
        self._metrics.producer_resets.inc()

    def _fenced(self, err: KafkaError) -> FencedError:
        self.open = False
        return FencedError(
            f"transactional.id {self.transactional_id!r} was fenced ({err.name()}): another "
            "worker with the same instance id has started; this worker stops so as not to "
            "fence it back"
        )

    def close(self) -> None:
        """After a clean stop: nothing is open, so this only drains delivery reports."""
        if self.open:
            self.abort("shutdown")
        self.producer.flush(self._timeout)
