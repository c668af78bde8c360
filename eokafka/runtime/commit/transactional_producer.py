"""The transactional producer: librdkafka's transactional calls, retried by error class.

Only the transaction owner (owner.py) uses this class: it alone begins, commits and aborts,
and re-creates the producer.

Error classes follow librdkafka's transactional API: retriable errors are retried within the
transaction timeout; abortable errors abort (the caller rewinds); fatal errors drop the
producer and start a new one, whose ``init_transactions`` aborts whatever the old one left
open. A fenced producer is fatal too, with two causes librdkafka reports alike: a newer worker
with the same transactional.id (then this one must stop rather than fence it back, or the two
would fence each other for ever), or the broker aborting a transaction that outlived
``transaction.timeout.ms`` (then a new producer carries on). The worker tells them apart by
asking the consumer group who holds this instance id (``replaced``).

An unknown outcome is not an abort (docs/architecture.md, invariant 10). A
``commit_transaction`` that timed out may have committed on the broker, so it is called
again within the transaction timeout, as librdkafka allows. If the outcome stays unknown,
the producer is re-created: its ``init_transactions`` finishes or aborts the old
transaction. librdkafka has no KIP-890 (transactions V2), so a request delayed by a timeout
or a broken connection could still land in a later transaction of the same producer epoch;
after any such *indefinite* error in a transaction the producer is re-created as well, even
when a retry went through, so that the epoch bump fences the delayed request. After every
re-creation the broker, not this process, knows how far the app got: the owner asks
``take_reset`` and has its participants re-sync from the committed offsets and store
changelogs before it goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any, NoReturn, TypeVar

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from eokafka import faults
from eokafka.client_configs import producer_config
from eokafka.config import Settings
from eokafka.errors import EokafkaError, FencedError
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.clients import KAFKA, Clients
from eokafka.runtime.commit.errors import TransactionAborted, is_fenced, is_indefinite

log = logging.getLogger("eokafka.transactions")
T = TypeVar("T")

_RETRY_BACKOFF = 0.05
_ATTEMPTS = 4  # a transactional call gets its budget in this many resumable attempts
_MIN_ATTEMPT_S = 0.1
_RESET_PATIENCE_S = 120.0  # how long a new producer waits for an unreachable broker


class TransactionalProducer:
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
        self._user_error_cb: Callable[[KafkaError], Any] | None = self._conf.get("error_cb")
        self._conf["error_cb"] = self._on_client_error
        self.transactional_id: str = self._conf["transactional.id"]
        self.bootstrap_servers = settings.bootstrap_servers
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
        self._indefinite: str | None = None  # first indefinite error of the open transaction
        self._reset_cause: str | None = None  # a re-creation the worker has not re-synced after
        self.producer = self._new_producer(3 * self._timeout)

    # -- callbacks -----------------------------------------------------------------------

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

    def _on_client_error(self, err: KafkaError) -> None:
        """A broken connection or timeout while a transaction is open marks it indefinite."""
        if self.open and is_indefinite(err) and self._indefinite is None:
            self._indefinite = f"client error {err.name()}: {err.str()}"
        if self._user_error_cb is not None:
            self._user_error_cb(err)

    # -- calls with retries --------------------------------------------------------------

    def _new_producer(self, patience: float) -> Producer:
        producer = self._clients.producer(self._conf)
        started = time.perf_counter()
        self._retry(producer.init_transactions, "init_transactions", patience)
        log.info(
            "transactional producer ready: transactional.id=%s (init_transactions %.3f s)",
            self.transactional_id,
            time.perf_counter() - started,
        )
        return producer

    def _retry(self, op: Callable[[float], T], what: str, budget: float) -> T:
        """Call ``op(timeout)`` until it succeeds, fails for good, or ``budget`` runs out.

        librdkafka's transactional calls are resumable after a retriable error: calling again
        continues the operation in the background, it does not start a second one. Each
        attempt gets a slice of the budget so that the log says what is going on.
        """
        give_up = time.monotonic() + budget
        attempt = max(self._timeout / _ATTEMPTS, _MIN_ATTEMPT_S)
        while True:
            left = give_up - time.monotonic()
            try:
                return op(max(min(left, attempt), _MIN_ATTEMPT_S))
            except KafkaException as exc:
                err = exc.args[0]
                if is_indefinite(err) and self.open and self._indefinite is None:
                    self._indefinite = f"{what}: {err.name()}: {err.str()}"
                final = err.fatal() or err.txn_requires_abort() or not err.retriable()
                left = give_up - time.monotonic()
                if final or left <= 0:
                    raise
                log.warning(
                    "%s: retriable error %s (%s), calling it again (%.1f s left)",
                    what, err.name(), err.str(), left,
                )  # fmt: skip
                time.sleep(_RETRY_BACKOFF)

    # -- the transaction -----------------------------------------------------------------

    def begin(self) -> None:
        if not self.open:
            self.producer.begin_transaction()
            self.open = True
            self._indefinite = None
            self.began = self._clients.clock()
            self.deadline = self.began + self._interval

    def commit(self, offsets: list[TopicPartition], group_metadata: object) -> None:
        """Commit outputs and consumed offsets together; raise TransactionAborted if not.

        On success the delivery reports of the transaction are served (changelog
        checkpoints) before anything else can replace the producer.
        """
        started = time.perf_counter()
        producer = self.producer
        what = "send_offsets_to_transaction"
        try:
            if offsets:
                self._retry(
                    lambda t: producer.send_offsets_to_transaction(offsets, group_metadata, t),
                    what,
                    self._timeout,
                )
            faults.reached("commit.offsets-sent")
            what = "commit_transaction"
            self._retry(producer.commit_transaction, what, self._timeout)
        except KafkaException as exc:
            err = exc.args[0]
            if not (err.fatal() or err.txn_requires_abort()) and (
                err.retriable() or is_indefinite(err)
            ):
                self._unknown_outcome(err, what)
            self.fail(err, what)
        self.open = False
        producer.poll(0)
        self._metrics.commit_latency.observe(time.perf_counter() - started)
        if self._indefinite is not None:
            self._reset(
                "indefinite-error",
                f"the transaction committed after {self._indefinite}; a request delayed by "
                "it could still land in a later transaction of this producer",
            )

    def _unknown_outcome(self, err: KafkaError, what: str) -> None:
        detail = (
            f"{what} did not finish within transaction_timeout_ms={self._timeout * 1000:.0f} "
            f"({err.name()}: {err.str()}): the broker may or may not have committed"
        )
        log.warning(
            "commit outcome unknown: %s; a new producer's init_transactions completes or aborts "
            "the transaction, then the worker re-reads the committed offsets and changelogs",
            detail,
        )
        self._reset("unknown-outcome", detail)
        raise TransactionAborted(f"unknown commit outcome: {detail}")

    def abort(self, reason: str, replace: bool = True) -> None:
        """Abort the open transaction (if any); outputs of its records are never read.

        If the abort fails, the producer is re-created (whose init_transactions aborts the
        transaction); on the way out (``replace=False``) the error is raised instead.
        """
        if not self.open:
            return
        try:
            self._retry(self.producer.abort_transaction, "abort_transaction", self._timeout)
        except KafkaException as exc:
            err = exc.args[0]
            fenced = is_fenced(err)
            if fenced and self._replaced():
                raise self._fenced(err) from exc
            if not replace:
                self.open = False
                raise
            cause = "fenced" if fenced else "abort-failed"
            self._reset(cause, f"abort_transaction: {err.name()}: {err.str()}"
                        f"{self._fenced_detail(err)}")  # fmt: skip
        else:
            if self._indefinite is not None:
                self._reset(
                    "indefinite-error",
                    f"aborted after {self._indefinite}; a request delayed by it could still "
                    "land in a later transaction of this producer",
                )
        self.open = False
        self.delivery_failure = None
        self._metrics.aborts.labels(reason).inc()
        log.info("transaction aborted (%s)", reason)

    def fail(self, err: KafkaError, during: str) -> NoReturn:
        """Deal with a transactional error by class, then raise TransactionAborted."""
        self.note_failure(err)
        fenced = is_fenced(err)
        if fenced and self._replaced():
            raise self._fenced(err)
        detail = f"{during}: {err.name()}: {err.str()}"
        if self.delivery_failure:
            detail += f" ({self.delivery_failure})"
        if is_indefinite(err) and self._indefinite is None:
            self._indefinite = detail
        # _STATE: produce() refuses records once an earlier delivery failed and the
        # transaction waits to be aborted; an abort is enough (a failed abort resets).
        waiting = err.code() == KafkaError._STATE and not err.fatal()
        abortable = err.txn_requires_abort() or waiting
        if abortable and not fenced and self._indefinite is None:
            log.warning("abortable transaction error, aborting: %s", detail)
            self.abort(err.name())
        else:
            if fenced:
                cause = "fenced"
            elif self._indefinite is not None:
                cause = "indefinite-error"
            else:
                cause = "fatal"
            self._reset(cause, detail + self._fenced_detail(err))
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

    # -- producer re-creation ------------------------------------------------------------

    def _reset(self, cause: str, detail: str) -> None:
        """Replace the producer; the worker must then re-sync from the broker (take_reset)."""
        log.warning(
            "re-creating the transactional producer (cause: %s): %s; creating a new producer",
            cause, detail,
        )  # fmt: skip
        with suppress(KafkaException):
            self.producer.purge(in_queue=True, in_flight=True, blocking=False)
        self.open = False
        self._indefinite = None
        self.delivery_failure = None
        self._reset_cause = cause
        self._metrics.producer_resets.labels(cause).inc()
        try:
            self.producer = self._new_producer(max(_RESET_PATIENCE_S, 6 * self._timeout))
        except KafkaException as exc:
            err = exc.args[0]
            raise EokafkaError(
                f"could not re-create the transactional producer (transactional.id="
                f"{self.transactional_id!r}) after {cause}: init_transactions failed with "
                f"{err.name()}: {err.str()}; check that the brokers at bootstrap_servers="
                f"{self.bootstrap_servers} are reachable"
            ) from exc

    def take_reset(self) -> str | None:
        """The cause of a producer re-creation since the last call, or None.

        After one, offsets and stores remembered by the worker may be wrong either way (the
        old transaction may have committed or not), so the worker re-syncs from the broker.
        """
        cause, self._reset_cause = self._reset_cause, None
        return cause

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
