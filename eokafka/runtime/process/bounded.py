"""Bounded runs: process the inputs up to where they ended at the start, or N records, or S s.

The end of each input partition is captured once, before any worker starts, as the offset a
read_committed consumer would reach (the last stable offset, so a trailing transaction
marker is inside the bound and an open transaction's records are not). The worker loop
passes each consumed batch through ``admit``: records at or past a partition's end (or past
the record budget) are held back, the partition is paused, and its task commits the first
held record's offset as its position (task.py's ``held``), so the commit never skips them:
a later run reads them. Partition EOF events move the position over trailing transaction
markers. Either move may come after the transaction of the last record committed, so an
offsets-only transaction commits it: the position after the last record sits below the end
when the log ends in markers. The run is a commit participant: it counts what committed.

A worker stops only when the group's committed offsets show every input partition done,
not just its own: a rebalance may move partitions between workers, a partition may belong
to no live member for a while, and repartition topics keep receiving records until every
source partition is done. Committed offsets decide, so a killed run restarted with the same
command finishes the same work without duplicates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from eokafka.client_configs import admin_config
from eokafka.config import Settings
from eokafka.errors import EokafkaError
from eokafka.metrics import TxnTally
from eokafka.runtime.clients import KAFKA, Clients
from eokafka.runtime.commit.owner import TransactionOwner
from eokafka.runtime.commit.participant import Abort, Offsets, Participant
from eokafka.runtime.tasks.manager import TaskManager
from eokafka.runtime.topics import TopicGuard
from eokafka.topology import Topology

log = logging.getLogger("eokafka.bounded")
TP = tuple[str, int]
_RPC_TIMEOUT = 30.0
_GROUP_CHECK_EVERY = 0.5  # seconds between reads of the group's committed offsets
_GROUP_RPC_TIMEOUT = 10.0


@dataclass(frozen=True)
class Bounds:
    """What a bounded run stops at; captured once and handed to every worker process."""

    until_end: bool = False
    max_records: int | None = None  # input records this worker processes at most
    max_seconds: float | None = None
    ends: Mapping[TP, int] = field(default_factory=dict)  # read_committed end at the start
    starts: Mapping[TP, int] = field(default_factory=dict)  # log start offsets at the start

    def share(self, slot: int, processes: int) -> Bounds:
        """Worker ``slot``'s part of ``max_records``: the budget is split evenly."""
        if self.max_records is None:
            return self
        part = self.max_records // processes + (slot < self.max_records % processes)
        return replace(self, max_records=part)


@dataclass(frozen=True)
class RunSummary:
    records_in: int
    records_out: int
    seconds: float
    reason: str  # end, max-records, max-seconds, or interrupted

    def text(self) -> str:
        rate = self.records_in / self.seconds if self.seconds > 0 else 0.0
        shown = f"{rate:,.0f}" if rate >= 100 or rate == 0 else f"{rate:.2g}"  # 3 in 7 s: 0.43
        return (
            f"bounded run finished ({self.reason}): {self.records_in:,} records in, "
            f"{self.records_out:,} out, in {self.seconds:.1f} s ({shown} records/s)"
        )


def total(summaries: Iterable[RunSummary]) -> RunSummary:
    """The summary of a run's workers together: counts add up, time is the longest."""
    items = list(summaries)
    reasons = {s.reason for s in items}
    reason = "interrupted" if "interrupted" in reasons or not items else ", ".join(sorted(reasons))
    return RunSummary(
        sum(s.records_in for s in items),
        sum(s.records_out for s in items),
        max((s.seconds for s in items), default=0.0),
        reason,
    )


def external_topics(topology: Topology) -> list[str]:
    return [t for t in topology.topics if t not in topology.internal_topics]


def capture(
    settings: Settings,
    topology: Topology,
    until_end: bool,
    max_records: int | None,
    max_seconds: float | None,
    clients: Clients = KAFKA,
) -> Bounds:
    """The bounds of a run starting now; end offsets are read only for ``until_end``."""
    ends: dict[TP, int] = {}
    starts: dict[TP, int] = {}
    if until_end:
        admin = clients.admin(admin_config(settings))
        topics = external_topics(topology)
        tps = []
        try:
            for topic in topics:
                md = admin.list_topics(topic=topic, timeout=_RPC_TIMEOUT).topics.get(topic)
                if md is not None and md.error is None:
                    tps.extend(TopicPartition(topic, p) for p in md.partitions)
            starts = _list_offsets(admin, tps, OffsetSpec.earliest())
            ends = _list_offsets(admin, tps, OffsetSpec.latest())
        except KafkaException as exc:
            raise EokafkaError(
                f"--until-end: could not read the end offsets of {', '.join(topics)} from "
                f"{settings.bootstrap_servers}: {exc.args[0].str()}"
            ) from exc
        log.info(
            "bounded run: processing up to %s",
            ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(ends.items())) or "nothing",
        )
    return Bounds(until_end, max_records, max_seconds, ends, starts)


def _list_offsets(admin: AdminClient, tps: list[TopicPartition], spec: OffsetSpec) -> dict[TP, int]:
    if not tps:
        return {}
    futures = admin.list_offsets(
        {tp: spec for tp in tps},
        isolation_level=IsolationLevel.READ_COMMITTED,
        request_timeout=_RPC_TIMEOUT,
    )
    return {
        (tp.topic, tp.partition): f.result(timeout=_RPC_TIMEOUT).offset
        for tp, f in futures.items()
    }


class BoundedRun(Participant):
    """Consulted by the worker loop (``admit``, ``finished``); counts what commits."""

    def __init__(
        self,
        bounds: Bounds,
        topology: Topology,
        settings: Settings,
        owner: TransactionOwner,
        tasks: TaskManager,
        consumer: Consumer,
        topics: TopicGuard,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bounds = bounds
        self.settings = settings
        self.owner = owner
        self.tally: TxnTally = owner.tally
        self.tasks = tasks
        self.consumer = consumer
        self.topics = topics
        self._clock = clock
        self.external = frozenset(external_topics(topology))
        self.internal = sorted(topology.internal_topics)
        self.started = self._clock()
        self.reason = "interrupted"
        self.paused: set[TP] = set()  # paused at their end by this run
        self.in_txn = 0  # external records handed to the open transaction
        self.records_in = 0  # external records committed
        self.records_out = 0  # records committed to topics other than internal ones
        self._next_check = 0.0

    def end(self, tp: TP) -> int:
        """A partition that did not exist at the start (or was added since) ends at 0."""
        return self.bounds.ends.get(tp, 0)

    def admit(self, msgs: list[Message]) -> list[Message]:
        """The records of a batch that are inside the bounds; notes EOFs and what is held."""
        budget = None
        if self.bounds.max_records is not None:
            budget = self.bounds.max_records - self.records_in - self.in_txn
        until_end = self.bounds.until_end
        by_input = self.tasks.by_input
        kept: list[Message] = []
        for msg in msgs:
            err = msg.error()
            tp = (msg.topic(), msg.partition())
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._eof(tp, msg.offset())
                else:
                    kept.append(msg)
                continue
            task = by_input.get(tp)
            if task is not None and tp in task.held:
                continue
            if tp[0] in self.external:
                beyond = until_end and msg.offset() >= self.end(tp)
                if beyond or (budget is not None and budget <= 0):
                    self._hold(tp, msg.offset())
                    continue
                if budget is not None:
                    budget -= 1
                self.in_txn += 1
            kept.append(msg)
        return kept

    def _hold(self, tp: TP, offset: int) -> None:
        self.tasks.hold(tp, offset)
        self._commit_move(tp, offset)

    def _eof(self, tp: TP, offset: int) -> None:
        """The position moved to ``offset``, maybe over markers: make sure it gets committed."""
        self.tasks.at_end(tp)
        task = self.tasks.by_input.get(tp)
        if task is None or tp not in task.held:
            self._commit_move(tp, offset)

    def _commit_move(self, tp: TP, offset: int) -> None:
        """A position beyond the committed offset with no record to carry it (markers,
        held records) still has to reach the group: open a transaction for the loop to
        commit, offsets only if nothing else comes."""
        if offset > self.tasks.committed_offsets().get(tp, -1):
            self.owner.begin()

    # -- as a commit participant ---------------------------------------------------------

    def committed(self, offsets: Offsets) -> None:
        internal = self.internal
        self.records_in += self.in_txn
        self.records_out += sum(n for t, n in self.tally.produced.items() if t not in internal)
        self.in_txn = 0

    def aborted(self, abort: Abort) -> None:
        self.in_txn = 0

    def rewind(self) -> None:
        """The inputs were sought back: those paused at their end read again."""
        if self.paused:
            self.consumer.resume([TopicPartition(*tp) for tp in self.paused])
            self.paused.clear()

    def resync(self) -> bool:
        self.rewind()
        return True

    # -- when to stop --------------------------------------------------------------------

    def finished(self) -> bool:
        """Whether the worker should commit and stop now."""
        now = self._clock()
        if self.bounds.max_seconds is not None and now - self.started >= self.bounds.max_seconds:
            self.reason = "max-seconds"
            return True
        limit = self.bounds.max_records
        if limit is not None and self.records_in + self.in_txn >= limit:
            self.reason = "max-records"
            return True
        if not self.bounds.until_end or not self._own_done():
            return False
        if self.owner.open or now < self._next_check:
            return False  # let the open transaction commit its positions first
        self._next_check = now + _GROUP_CHECK_EVERY
        if self._group_done():
            self.reason = "end"
            return True
        return False

    def _own_done(self) -> bool:
        """Pause every owned input partition at its end; True when all of them are. An
        input whose committed offset is not known yet has no position: not done."""
        if any(tp.topic in self.external for tp in self.tasks.awaiting):
            return False
        owned = [tp for tp in self.tasks.assignment if tp.topic in self.external]
        committed = self.tasks.committed_offsets()
        done = True
        for tp in self.consumer.position(owned) if owned else []:
            key = (tp.topic, tp.partition)
            task = self.tasks.by_input.get(key)
            held = task.resume_offset(key) if task is not None else None
            offset = held if held is not None else tp.offset
            if offset < 0:
                offset = committed.get(key, -1)
            if offset == OFFSET_BEGINNING:
                offset = self.bounds.starts.get(key, 0)
            if offset >= self.end(key):
                if key not in self.paused:
                    self.consumer.pause([TopicPartition(*key)])
                    self.paused.add(key)
                    self.tasks.at_end(key)
            else:
                done = False
        return done

    def _group_done(self) -> bool:
        """Every input partition of the group is committed at its end, whoever owns it."""
        tps = [TopicPartition(t, p) for t, p in self.bounds.ends]
        for topic in self.internal:
            count = self.topics.partitions(topic) or 0
            tps.extend(TopicPartition(topic, p) for p in range(count))
        if not tps:
            return True
        committed = self._committed(tps)
        if committed is None:
            return False
        outer = [tp for tp in committed if tp.topic in self.external]
        inner = [tp for tp in committed if tp.topic not in self.external]
        answered = {(tp.topic, tp.partition) for tp in outer}
        starts, ends = self.bounds.starts, self.bounds.ends
        if any(k not in answered and e > starts.get(k, 0) for k, e in ends.items()):
            return False  # a partition with records to read, absent from the answer
        if not self._at_ends(outer, starts, ends):
            return False
        if not inner:
            return True
        admin = self.topics.admin
        # Repartition topics end where their records end now: every source partition is
        # committed at its end, so no transaction still writes to them.
        lows = _list_offsets(admin, inner, OffsetSpec.earliest())
        return self._at_ends(inner, lows, _list_offsets(admin, inner, OffsetSpec.latest()))

    def _committed(self, tps: list[TopicPartition]) -> list[TopicPartition] | None:
        """The group's stable committed offsets, asked through the admin client.

        Not through the group consumer: its OffsetFetch waits for a rebalance to finish,
        which needs this very thread to poll.
        """
        group = self.settings.application_id
        request = [ConsumerGroupTopicPartitions(group, tps)]
        admin = self.topics.admin
        try:
            if isinstance(admin, AdminClient):
                # librdkafka's admin client crashes (rd_kafka_cgrp_op, librdkafka#5040) when
                # an OffsetFetch meets a coordinator not ready yet (a new group on a new
                # broker): DescribeGroups first, whose retries are safe, until the group is.
                admin.describe_consumer_groups([group], request_timeout=_GROUP_RPC_TIMEOUT)[
                    group
                ].result(timeout=_GROUP_RPC_TIMEOUT + 5)
            futures = admin.list_consumer_group_offsets(
                request, require_stable=True, request_timeout=_GROUP_RPC_TIMEOUT
            )
            result = futures[group].result(timeout=_GROUP_RPC_TIMEOUT + 5)
        except KafkaException as exc:
            log.info("bounded run: could not read the group's offsets yet: %s", exc)
            return None
        return list(result.topic_partitions)

    def _at_ends(
        self, committed: list[TopicPartition], starts: Mapping[TP, int], ends: Mapping[TP, int]
    ) -> bool:
        earliest = self.settings.auto_offset_reset == "earliest"
        for tp in committed:
            key = (tp.topic, tp.partition)
            start, end = starts.get(key, 0), ends.get(key, 0)
            offset = tp.offset if tp.offset >= 0 else (start if earliest else end)
            if offset < end:
                log.debug("bounded run: %s[%d] committed at %d, ends at %d", *key, offset, end)
                return False
        return True

    def summary(self) -> RunSummary:
        took = self._clock() - self.started
        return RunSummary(self.records_in, self.records_out, took, self.reason)
