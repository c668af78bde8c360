"""Aborts without progress: notice the loop, narrow it down to one record, and blame that one.

A transaction the broker refuses because of one record (too large for its topic, an invalid
record, a timestamp out of range) aborts again on every replay, and the offsets never move.
After such an abort (at once when the error is of a record class, after NARROW_AFTER aborts in
a row when its class is unknown) the worker commits fewer records per transaction, halving the
number at each further abort and doubling it again after each commit, until a transaction
holding a single record aborts: that record is the culprit and goes to the poison policy, named
with the broker's error. A single record whose transaction keeps aborting with an error of
unknown class (an authorization error, say) is not blamed, as the policy could then skip every
record of a partition: the worker stops, naming the record and the error. Transient errors
(timeouts, a broker away, fencing, a rebalance) never blame a record; they are counted, and the
worker keeps going, because the broker coming back is what ends them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from confluent_kafka import KafkaError, Message

from eokafka.errors import OutputRefusedError, PoisonRecordError, StalledError
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.commit.errors import codes

log = logging.getLogger("eokafka.abort_loop")
TP = tuple[str, int]
Position = tuple[str, int, int]  # topic, partition, offset
Mark = tuple[str, str, BaseException]  # processor(s), stage, the error the policy reports
NARROW_AFTER: Final = 3
STOP_AFTER: Final = 3  # aborts of unknown class of one record alone before stopping


RECORD_ERRORS: Final = codes(
    "MSG_SIZE_TOO_LARGE",
    "INVALID_RECORD",
    "INVALID_TIMESTAMP",
    "INVALID_MSG",
    "INVALID_MSG_SIZE",
    "RECORD_LIST_TOO_LARGE",
    "CORRUPT_MESSAGE",
)
TRANSIENT_ERRORS: Final = codes(
    "_TIMED_OUT",
    "_MSG_TIMED_OUT",
    "_TRANSPORT",
    "_ALL_BROKERS_DOWN",
    "_DESTROY",
    "_FATAL",
    "_FENCED",
    "_PURGE_QUEUE",
    "_PURGE_INFLIGHT",
    "REQUEST_TIMED_OUT",
    "NOT_COORDINATOR",
    "COORDINATOR_NOT_AVAILABLE",
    "COORDINATOR_LOAD_IN_PROGRESS",
    "CONCURRENT_TRANSACTIONS",
    "PRODUCER_FENCED",
    "INVALID_PRODUCER_EPOCH",
    "NOT_LEADER_FOR_PARTITION",
    "NOT_ENOUGH_REPLICAS",
    "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
    "REBALANCE_IN_PROGRESS",
    "UNKNOWN_MEMBER_ID",
    "ILLEGAL_GENERATION",
    "FENCED_INSTANCE_ID",
    # After a refused batch librdkafka's next transaction may fail on the sequence gap it
    # left (and bump the producer epoch): a consequence of the last abort, not a new fault.
    "OUT_OF_ORDER_SEQUENCE_NUMBER",
    "UNKNOWN_PRODUCER_ID",
)


def classify(error: KafkaError | None) -> str:
    """'record' (a record of the transaction is at fault), 'transient', or 'unknown'."""
    if error is None:
        return "unknown"
    code = error.code()
    if code in RECORD_ERRORS:
        return "record"
    if code in TRANSIENT_ERRORS or error.retriable() or error.fatal():
        return "transient"
    return "unknown"


@dataclass(frozen=True)
class Blame:
    """The record found alone in a transaction that the broker refused."""

    record: Position
    error: KafkaError | None
    aborts: int  # aborts without progress it took to find it
    certain: bool  # the error says a record is at fault, not just that the transaction failed

    def pin(self, marks: dict[Position, Mark], policy: str, processors: str) -> None:
        """Mark the record for its policy on the replay; under ``fail``, stop naming it."""
        topic, partition, offset = self.record
        err = self.error
        cause = f"{err.name()}: {err.str()}" if err is not None else "no error reported"
        if not self.certain:
            raise StalledError(
                f"{topic}[{partition}]@{offset}: a transaction holding only this record "
                f"aborted {self.aborts} times in a row ({cause}); this error does not say the "
                "record is at fault, so it is not set aside: fix the cause and restart"
            )
        if self.record in marks:
            raise StalledError(
                f"{topic}[{partition}]@{offset}: even its {policy} outcome is refused "
                f"({cause}); the record can be neither processed nor set aside"
            )
        exc = OutputRefusedError(
            f"a transaction holding only this record aborted: {cause} "
            f"(found after {self.aborts} aborts without progress)"
        )
        if policy == "fail":
            raise PoisonRecordError(topic, partition, offset, "produce", exc)
        marks[self.record] = (processors, "produce", exc)
        log.warning("%s[%d]@%d is the record at fault: %s", topic, partition, offset, exc)


def marks_ahead(marks: dict[Position, Mark], committed: Mapping[TP, int]) -> dict[Position, Mark]:
    """The poison marks a commit has not moved past yet: a replay still needs them."""
    return {k: v for k, v in marks.items() if k[2] >= committed.get(k[:2], -1)}


class AbortLoop:
    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics
        self.streak = 0
        self.cap: int | None = None  # records per transaction while narrowing
        self._ceiling = 1
        self._target: dict[TP, int] = {}  # positions the first refused transaction reached
        self._records: list[Position] = []  # the open transaction's records, while narrowing
        self._tries: Counter[Position] = Counter()

    def note(self, msgs: Iterable[Message]) -> None:
        """Remember which records the open transaction holds (called only while narrowing)."""
        self._records.extend(
            (m.topic(), m.partition(), m.offset()) for m in msgs if m.error() is None
        )

    def set_aside(self) -> None:
        """A deliberate abort that set a poison record aside: progress, not a loop."""
        self._records = []

    def aborted(
        self,
        error: KafkaError | None,
        records_in_txn: int,
        positions: Callable[[], Mapping[TP, int]],
    ) -> Blame | None:
        """Count an abort; return the record to blame once narrowing has isolated it."""
        records, self._records = self._records, []
        self.streak += 1
        self.metrics.aborts_without_progress.inc()
        self.metrics.abort_streak.set(self.streak)
        kind = classify(error)
        what = f"{error.name()}: {error.str()}" if error is not None else "no error reported"
        if self.cap is None:
            if kind == "record" or (kind == "unknown" and self.streak >= NARROW_AFTER):
                self._ceiling = self.cap = max(1, records_in_txn // 2)
                self._target = dict(positions())
                log.warning(
                    "%d abort(s) without progress (%s): narrowing down to the record at fault, "
                    "at most %d records per transaction",
                    self.streak, what, self.cap,
                )  # fmt: skip
            elif self.streak % 10 == 0:
                log.warning("%d aborts in a row without progress; last: %s", self.streak, what)
            return None
        if len(records) == 1 and records_in_txn <= 1 and kind != "transient":
            record = records[0]
            self._tries[record] += 1
            if kind == "record" or self._tries[record] >= STOP_AFTER:
                return Blame(record, error, self.streak, certain=kind == "record")
            return None
        if kind != "transient":
            self.cap = max(1, min(self.cap, max(1, records_in_txn)) // 2)
        return None

    def committed(self, committed: Mapping[TP, int], progressed: bool) -> None:
        """After a successful commit; ``progressed`` when it moved some offset forward."""
        if not progressed:
            return
        self._records = []
        if self.streak:
            self.streak = 0
            self.metrics.abort_streak.set(0)
        if self.cap is None:
            return
        if all(committed.get(tp, -1) >= offset for tp, offset in self._target.items()):
            log.info("narrowing done: committed past the records of the refused transaction")
            self.cap = None
            self._tries.clear()
        else:
            self.cap = min(self.cap * 2, self._ceiling)

    def forget(self) -> None:
        """Partitions moved: the narrowed range may no longer be this worker's."""
        self.cap = None
        self._records = []
        self._target = {}
        self._tries.clear()
