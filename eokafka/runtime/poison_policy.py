"""What becomes of a record that can't be processed or sent: the app's ``on_error`` policy.

``fail`` stops the worker naming the record; ``skip`` counts and logs it; ``dead-letter``
sends its original bytes to ``<application id>-dlq`` inside the same transaction, with
headers naming the fault. A record whose partial work can't be taken back inside the open
transaction (its store writes, a refused output after others were produced) is *marked*:
the transaction aborts, and every replay sends it straight to the policy. Marks outlive
aborts until a commit moves past the record, so k such records cost at most k aborts, and
the abort-loop detector (abort_loop.py) pins the record an unexplained loop isolates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from confluent_kafka import KafkaException, Message

from eokafka.config import Settings
from eokafka.errors import PoisonRecordError
from eokafka.metrics import TxnTally
from eokafka.runtime.abort_loop import AbortLoop, Mark, Position, marks_ahead
from eokafka.runtime.limits import OutputLimits
from eokafka.runtime.poison import dead_letter_record
from eokafka.sink import RecordRefused
from eokafka.tracebacks import TracebackLog

if TYPE_CHECKING:
    from eokafka.runtime.transactions import Transactions

log = logging.getLogger("eokafka.worker")
TP = tuple[str, int]
Produce = Callable[[str, bytes | None, bytes | None, int, int, Any], None]


class RecordFailed(Exception):
    """The open transaction must go (then replay): a record can't be undone inside it."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def where(msg: Message) -> str:
    return f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"


class PoisonPolicy:
    """The policy and the marks of one worker; the worker's loop calls it per record."""

    def __init__(
        self,
        settings: Settings,
        tally: TxnTally,
        limits: OutputLimits,
        abort_loop: AbortLoop,
        txn: Callable[[], Transactions],
        produce: Produce,
    ) -> None:
        self.policy = settings.on_error
        self.dlq = settings.dlq_topic
        self.tally = tally
        self.limits = limits
        self.abort_loop = abort_loop
        self._txn = txn
        self._produce = produce
        # Records set aside, keyed by (topic, partition, offset): each replay sends them
        # straight to the policy, until a commit moves past them.
        self.marks: dict[Position, Mark] = {}
        self._set_aside = False  # the abort under way is one that marked a record
        self.tracebacks = TracebackLog()  # the user's traceback, once per record

    def error(self, msg: Message, stage: str, exc: BaseException) -> PoisonRecordError:
        return PoisonRecordError(msg.topic(), msg.partition(), msg.offset(), stage, exc)

    def apply(self, msg: Message, processor: str, stage: str, exc: BaseException) -> None:
        """Fail, skip or dead-letter ``msg`` now, inside the open transaction."""
        if self.policy == "fail":
            raise self.error(msg, stage, exc) from exc
        at = where(msg)
        reason = f"{type(exc).__name__}: {exc}"
        record = (msg.topic(), msg.partition(), msg.offset())
        if self.policy == "skip":
            reason += self.tracebacks.suffix(record, exc)
            log.warning("skipped poison record %s (%s, %s): %s", at, processor, stage, reason)
            self.tally.skipped[msg.topic()] += 1
            return
        limit = self.limits.learn(self.dlq)
        key, value, headers = dead_letter_record(msg, processor, stage, exc, self.dlq, limit)
        try:
            self._produce(self.dlq, value, key, -1, max(msg.timestamp()[1], 0), headers)
        except KafkaException as kexc:  # abort: if it loops, narrowing says it can't be sent
            self._txn().note_failure(kexc.args[0])
            raise RecordFailed(kexc.args[0].name(), kexc.args[0].str()) from kexc
        self.tally.dead_lettered[msg.topic()] += 1
        reason += self.tracebacks.suffix(record, exc)
        log.warning("dead-lettered %s to %s (%s, %s): %s", at, self.dlq, processor, stage, reason)

    def replay_without(
        self, msg: Message, processor: str, stage: str, exc: BaseException
    ) -> NoReturn:
        """Abort and replay the transaction; this record then goes straight to the policy."""
        self.set_aside((msg.topic(), msg.partition(), msg.offset()), processor, stage, exc)
        raise RecordFailed(f"poison-{stage}", f"{stage} failed at {where(msg)}: {exc}")

    def set_aside(self, record: Position, processor: str, stage: str, exc: BaseException) -> None:
        """Mark ``record`` for the policy on the replay of the transaction about to abort.

        Under ``fail`` there is no replay: stop, naming the record.
        """
        if self.policy == "fail":
            raise PoisonRecordError(*record, stage, exc) from exc
        self.marks[record] = (processor, stage, exc)
        self._set_aside = True

    def sink_refused(self, refused: RecordRefused, processors: str) -> None:
        """A sink refused one record's row before the commit: the replay goes without it."""
        log.warning("%s; aborting to replay without that record", refused)
        self.set_aside(refused.record, processors, "sink", refused.cause)

    def refused(self, msg: Message, processor: str, stateful: bool, exc: BaseException) -> None:
        """An output refused before anything of its record was produced."""
        if stateful and self.policy != "fail":
            self.replay_without(msg, processor, "produce", exc)  # undo its store writes
        self.apply(msg, processor, "produce", exc)

    def committed(self, committed: dict[TP, int], moved: bool) -> None:
        """After a commit: marks behind the committed offsets are done with; no loop now."""
        if self.marks:
            self.marks = marks_ahead(self.marks, committed)
        self.abort_loop.committed(committed, moved)

    def aborted(
        self,
        counted: bool,
        records_in_txn: int,
        positions: Callable[[], dict[TP, int]],
        sources: Callable[[str], str],
    ) -> None:
        """Tell the abort-loop detector; pin the record it isolated to the policy."""
        failure = self._txn().take_failure()
        if self._set_aside:
            self._set_aside = False
            self.abort_loop.set_aside()
        elif counted:
            blame = self.abort_loop.aborted(failure, records_in_txn, positions)
            if blame is not None:
                blame.pin(self.marks, self.policy, sources(blame.record[0]))

    def forget(self, gone: set[TP]) -> None:
        """Partitions that left: their marks go with them."""
        self.marks = {k: v for k, v in self.marks.items() if k[:2] not in gone}
        self.abort_loop.forget()
