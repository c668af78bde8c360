"""A source's records into the open transaction; the ``on_error`` policy for those that can't go.

Every record is checked against the limits of its topic and of the producer (limits.py)
before it is produced (through the record collector, collector.py), so a record that would
be refused never reaches librdkafka; it goes to the app's policy, named by its origin (file
and line, table and id), as does input the source could not read
(:class:`eokafka.source.Unreadable`):

* ``fail``: stop, raising :class:`SourceRecordError` naming it;
* ``skip``: count it and log it;
* ``dead-letter``: send its bytes to ``<application id>-dlq`` inside the same transaction,
  with the ``eokafka.error.*`` headers of every dead letter (``eokafka.record``) and
  ``eokafka.source.name`` plus one ``eokafka.source.<field>`` per origin field.

A refusal only the broker can report (a size limit under compression, say) arrives as a
failed delivery, and the transaction aborts. The broker refuses a whole batch, so every
record of it reports the error: unless the record was alone in its transaction, it is only
a suspect, and the replay commits one record per transaction until each suspect either went
through or failed alone. A record that failed alone is marked by its origin, and the next
replay sends it straight to the policy, as poison marks do for Kafka inputs. No refusal
ever makes the producer be re-created.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from functools import partial
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, Message

from eokafka.config import Settings
from eokafka.errors import EokafkaError, OutputRefusedError, SourceRecordError, StalledError
from eokafka.metrics import TxnTally
from eokafka.record import HEADER_PREFIX, fault_headers
from eokafka.runtime.commit.abort_loop import STOP_AFTER, classify
from eokafka.runtime.commit.dead_letters import fit_dead_letter, require_key
from eokafka.runtime.commit.limits import OutputLimits, TopicLimit
from eokafka.runtime.commit.participant import Abort, Offsets, Participant
from eokafka.source import Feed, Origin, Position, Read, SourceItem, Unreadable

log = logging.getLogger("eokafka.sources")
Headers = list[tuple[str, bytes]]
DLQRecord = tuple[bytes | None, bytes | None, Headers]


class Produce(Protocol):
    """The record collector's produce: into the open transaction, waiting for room."""

    def __call__(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        partition: int = -1,
        timestamp: int = 0,
        headers: Headers | None = None,
        report: partial[None] | None = None,
    ) -> None: ...


def source_dead_letter(
    origin: Origin,
    stage: str,
    exc: BaseException,
    key: bytes | None,
    value: bytes | None,
    dlq: str,
    limit: TopicLimit,
) -> DLQRecord:
    """Key, value and headers of a source record's dead letter, fitted to the topic's limit."""
    require_key(key, limit, dlq, str(origin))
    headers = [
        *fault_headers(stage, exc),
        (f"{HEADER_PREFIX}source.name", origin.source.encode()),
        *((f"{HEADER_PREFIX}source.{k}", v.encode(errors="replace")) for k, v in origin.fields),
    ]
    return fit_dead_letter(key, value, headers, limit.max_bytes)


class SourceSender(Participant):
    """Sends one worker's source records; finds and marks the records the broker refused.

    A participant of the transaction owner: a commit forgets what went through, an abort
    judges the deliveries the broker refused."""

    def __init__(
        self, settings: Settings, limits: OutputLimits, tally: TxnTally, produce: Produce
    ) -> None:
        self.policy = settings.on_error
        self.dlq = settings.dlq_topic
        self.limits = limits
        self.tally = tally
        self._produce = produce
        # Records the broker refused alone, by origin: each replay sends them to the policy,
        # until a commit took them.
        self.marks: dict[Origin, tuple[str, BaseException]] = {}
        # Records of a batch the broker refused, not yet seen alone in a transaction.
        self.suspects: set[Origin] = set()
        self._narrow_left = 0  # single-record transactions left to find the culprit(s)
        self._sent: list[Origin] = []  # records of the open transaction, while narrowing
        self._in_txn = 0  # records the open transaction produced to source topics
        self._taken: set[Origin] = set()
        self._failed: list[tuple[Origin, KafkaError]] = []  # deliveries of the open txn
        self._strikes: Counter[Origin] = Counter()  # aborts of unknown class, per record

    @property
    def narrowing(self) -> bool:
        """Commit one record per transaction: a refused batch's culprit is being looked for."""
        return bool(self.suspects) and self._narrow_left > 0

    def send(self, feed: Feed, item: SourceItem) -> None:
        """Produce one item of ``feed`` into the open transaction, or apply the policy."""
        topic = feed.topic
        if isinstance(item, Unreadable):
            self.apply(topic, item.origin, "read", item.error, None, item.raw)
            return
        if isinstance(item, Read):
            key, value, origin = item
        else:
            (key, value), origin = item, Origin(feed.connector.name, ())
        try:
            k = None if key is None else feed.key_serde.serialize(key)
            v = feed.value_serde.serialize(value)
        except Exception as exc:  # noqa: BLE001 (a serde's error is the record's fault)
            self.apply(topic, origin, "serialize", exc, None, None)
            return
        if self.marks and origin in self.marks:
            self._taken.add(origin)
            self.apply(topic, origin, *self.marks[origin], k, v)
            return
        limit = self.limits.topics.get(topic) or self.limits.learn(topic)
        if (k is None and limit.compacted) or len(k or b"") + len(v or b"") > limit.max_bytes:
            refused = self.limits.refusal(topic, k, v, None)
            if refused is not None:
                self.apply(topic, origin, "produce", OutputRefusedError(refused), k, v)
                return
        try:
            self._produce(topic, v, k, -1, 0, None, partial(self._delivered, origin))
        except KafkaException as exc:
            err = exc.args[0]
            if classify(err) != "record":
                raise
            self.apply(topic, origin, "produce", OutputRefusedError(f"{err.name()}: {err.str()}"),
                       k, v)  # fmt: skip
            return
        self.tally.produced[topic] += 1
        self._in_txn += 1
        if self.suspects:
            self._sent.append(origin)

    def position(self, feed: Feed, topic: str, position: Position) -> None:
        """Produce the source's position after its records; one too large stops the worker."""
        key, value = feed.connector.name.encode(), json.dumps(position).encode()
        refused = self.limits.refusal(topic, key, value, None)
        if refused is not None:
            raise EokafkaError(
                f"source {feed.connector.name}: its position ({len(value)} bytes) can't be "
                f"stored in {topic!r}: {refused}"
            )
        self._produce(topic, value, key, -1)

    def apply(
        self,
        topic: str,
        origin: Origin,
        stage: str,
        exc: BaseException,
        key: bytes | None,
        value: bytes | None,
    ) -> None:
        """Fail, skip or dead-letter one source record, inside the open transaction."""
        if self.policy == "fail":
            raise SourceRecordError(origin, stage, exc) from exc
        reason = f"{type(exc).__name__}: {exc}"
        if self.policy == "skip":
            log.warning("skipped %s (%s): %s", origin, stage, reason)
            self.tally.skipped[topic] += 1
            return
        limit = self.limits.learn(self.dlq)
        k, v, headers = source_dead_letter(origin, stage, exc, key, value, self.dlq, limit)
        self._produce(self.dlq, v, k, -1, 0, headers)
        self.tally.dead_lettered[topic] += 1
        log.warning("dead-lettered %s to %s (%s): %s", origin, self.dlq, stage, reason)

    def _delivered(self, origin: Origin, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:  # only failures are reported (delivery.report.only.error)
            self._failed.append((origin, err))

    def committed(self, offsets: Offsets) -> None:
        """Marked records went to the policy, suspects through: forget them."""
        for origin in self._taken:
            self.marks.pop(origin, None)
        if self.suspects:
            sources = {o.source for o in self.suspects}
            if any(o.source in sources for o in (*self._sent, *self._taken)):
                self._narrow_left -= 1  # one more record of theirs went through alone
            self.suspects.difference_update(self._sent, self._taken)
            if not self.narrowing:
                self.suspects.clear()
        self._taken.clear()
        self._sent.clear()
        self._in_txn = 0
        self._failed.clear()
        self._strikes.clear()

    def aborted(self, abort: Abort) -> None:
        """Judge the deliveries the broker refused in the aborted transaction.

        A refusal of a record class (too large, invalid) blames a record alone in its
        transaction (marked for the policy; under ``fail``, the worker stops naming it) and
        makes suspects of a batch's records; one of unknown class stops the worker after
        STOP_AFTER aborts; transient errors (a broker away, a timeout) blame no record.
        """
        failed, self._failed = self._failed, []
        alone, records = self._in_txn == 1, self._in_txn
        self._taken.clear()
        self._sent.clear()
        self._in_txn = 0
        suspects = len(self.suspects)
        for origin, err in failed:
            kind = classify(err)
            cause = f"{err.name()}: {err.str()}"
            if kind == "record" and not alone:
                self.suspects.add(origin)
                self._narrow_left = max(self._narrow_left, records)
                continue
            if kind == "record" and origin.fields:
                exc = OutputRefusedError(f"the broker refused it: {cause}")
                if self.policy == "fail":
                    raise SourceRecordError(origin, "produce", exc)
                self.marks[origin] = ("produce", exc)
                log.warning("%s was refused (%s); the replay sets it aside", origin, cause)
                continue
            if kind == "transient":
                continue
            self._strikes[origin] += 1
            if self._strikes[origin] >= STOP_AFTER or kind == "record":
                raise StalledError(
                    f"{origin}: its transaction aborted {self._strikes[origin]} times in a "
                    f"row, its delivery failing with {cause}; fix the cause and restart"
                )
        if len(self.suspects) > suspects:
            log.warning(
                "the broker refused a batch of %d source records (e.g. %s); committing them "
                "one at a time to find the one at fault", len(self.suspects), failed[0][0],
            )  # fmt: skip
