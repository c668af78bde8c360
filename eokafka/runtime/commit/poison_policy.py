"""What becomes of a record that can't be processed or sent: its processor's ``on_error``.

``fail`` stops the worker naming the record; ``skip`` counts and logs it; ``dead-letter``
sends its original bytes to ``<application id>-dlq`` inside the same transaction, with
headers naming the fault. A handler (eokafka/on_error.py) picks one of the three per record,
here, when the record goes to the policy; a handler that raises stops the worker.

A record whose partial work can't be taken back inside the open transaction (its store
writes, a refused output after others were produced) is *marked*: the transaction aborts,
and every replay sends it straight to the policy. Marks outlive aborts until a commit moves
past the record, so k such records cost at most k aborts, and the abort-loop detector
(abort_loop.py) pins the record an unexplained loop isolates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import NoReturn

from confluent_kafka import Message

from eokafka.config import Settings
from eokafka.errors import PoisonRecordError
from eokafka.metrics import TxnTally
from eokafka.on_error import Action, OnError, decide
from eokafka.record import Record
from eokafka.runtime.commit.abort_loop import AbortLoop, Mark, Position
from eokafka.runtime.commit.dead_letters import dead_letter_record
from eokafka.runtime.commit.errors import RecordFailed
from eokafka.runtime.commit.limits import OutputLimits
from eokafka.runtime.commit.participant import Abort, Offsets, Participant
from eokafka.sink import RecordRefused
from eokafka.tracebacks import TracebackLog

log = logging.getLogger("eokafka.worker")
TP = tuple[str, int]
DeadLetter = Callable[[bytes | None, bytes | None, list[tuple[str, bytes]], int], None]


def where(msg: Message) -> str:
    return f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"


class PoisonPolicy(Participant):
    """The policy of one worker; its processing loop calls it per record.

    The marks themselves belong to the task of the record's partition (``marks_of``); the
    policy decides, and tells the abort-loop detector what each abort was."""

    def __init__(
        self,
        settings: Settings,
        tally: TxnTally,
        limits: OutputLimits,
        abort_loop: AbortLoop,
        dead_letter: DeadLetter,
        marks_of: Callable[[str, int], dict[Position, Mark]],
        positions: Callable[[], Mapping[TP, int]],
        committed: Callable[[], Mapping[TP, int]],
        sources: Callable[[str], str],
        records: Callable[[], int],
        policies: Mapping[str, OnError] | None = None,
    ) -> None:
        """``policies``: each input topic's ``on_error`` (Topology.error_policies); a topic
        not in it (a source connector's records) follows the word ``settings.on_error``."""
        self.policy = settings.on_error
        self._policies: Mapping[str, OnError] = policies or {}
        self.dlq = settings.dlq_topic
        self.tally = tally
        self.limits = limits
        self.abort_loop = abort_loop
        self._dead_letter = dead_letter
        self._marks_of = marks_of
        self._positions = positions
        self._committed = committed
        self._sources = sources
        self._records = records  # input records in the open transaction
        self._set_aside = False  # the abort under way is one that marked a record
        self.tracebacks = TracebackLog()  # the user's traceback, once per record

    def error(self, msg: Message, stage: str, exc: BaseException) -> PoisonRecordError:
        return PoisonRecordError(msg.topic(), msg.partition(), msg.offset(), stage, exc)

    def fails(self, topic: str) -> bool:
        """Whether every error of ``topic``'s records stops the worker (its word is fail): then
        nothing is set aside for a replay. A handler may answer otherwise, so it never does."""
        return self._policies.get(topic, self.policy) == "fail"

    def name(self, topic: str) -> str:
        """``topic``'s policy in a log line: its word, or "handler"."""
        policy = self._policies.get(topic, self.policy)
        return policy if isinstance(policy, str) else "handler"

    def verdict(
        self, msg: Message, stage: str, exc: BaseException
    ) -> tuple[Action, list[tuple[str, bytes]]]:
        """What to do with ``msg``, and the dead letter's extra headers (a handler's)."""
        policy = self._policies.get(msg.topic(), self.policy)
        if isinstance(policy, str):
            return policy, []  # type: ignore[return-value]  # Settings checked the word
        return decide(policy, Record(msg.key(), msg.value(), msg), exc, stage)

    def apply(self, msg: Message, processor: str, stage: str, exc: BaseException) -> None:
        """Fail, skip or dead-letter ``msg`` now, inside the open transaction."""
        action, extra = self.verdict(msg, stage, exc)
        if action == "fail":
            raise self.error(msg, stage, exc) from exc
        at = where(msg)
        reason = f"{type(exc).__name__}: {exc}"
        record = (msg.topic(), msg.partition(), msg.offset())
        if action == "skip":
            reason += self.tracebacks.suffix(record, exc)
            log.warning("skipped poison record %s (%s, %s): %s", at, processor, stage, reason)
            self.tally.skipped[msg.topic()] += 1
            return
        limit = self.limits.learn(self.dlq)
        key, value, headers = dead_letter_record(
            msg, processor, stage, exc, self.dlq, limit, extra
        )
        self._dead_letter(key, value, headers, max(msg.timestamp()[1], 0))
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
        if self.fails(record[0]):
            raise PoisonRecordError(*record, stage, exc) from exc
        self._marks_of(record[0], record[1])[record] = (processor, stage, exc)
        self._set_aside = True

    def sink_refused(self, refused: RecordRefused, processors: str) -> None:
        """A sink refused one record's row before the commit: the replay goes without it."""
        log.warning("%s; aborting to replay without that record", refused)
        self.set_aside(refused.record, processors, "sink", refused.cause)

    def refused(self, msg: Message, processor: str, stateful: bool, exc: BaseException) -> None:
        """An output refused before anything of its record was produced."""
        if stateful and not self.fails(msg.topic()):
            self.replay_without(msg, processor, "produce", exc)  # undo its store writes
        self.apply(msg, processor, "produce", exc)

    # -- as a commit participant ---------------------------------------------------------

    def committed(self, offsets: Offsets) -> None:
        """A commit that held records is progress: no abort loop now."""
        self.abort_loop.committed(self._committed(), self._records() > 0)

    def aborted(self, abort: Abort) -> None:
        """Tell the abort-loop detector; pin the record it isolated to the policy."""
        if self._set_aside:
            self._set_aside = False
            self.abort_loop.set_aside()
        elif abort.stays:
            blame = self.abort_loop.aborted(abort.failure, abort.records, self._positions)
            if blame is not None:
                topic, partition, _ = blame.record
                blame.pin(self._marks_of(topic, partition), self.name(topic), self._sources(topic))

    def forget(self) -> None:
        """Partitions moved: a narrowing under way may be about records gone elsewhere."""
        self.abort_loop.forget()
