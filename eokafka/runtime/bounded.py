"""Bounded runs: process the inputs up to where they ended at the start, or N records, or S s.

The end of each input partition is captured once, before any worker starts, as the offset a
read_committed consumer would reach (the last stable offset, so a trailing transaction
marker is inside the bound and an open transaction's records are not). The worker's group
consumer is wrapped: records at or past a partition's end (or past the record budget) are
held back, the partition is paused, and the consumer reports its position as the first held
record, so the commit never skips them: a later run reads them. Partition EOF events move
the position over trailing transaction markers. Either move may come after the transaction
of the last record committed, so an offsets-only transaction commits it: the position
after the last record sits below the end when the log ends in markers.

A worker stops only when the group's committed offsets show every input partition done,
not just its own: a rebalance may move partitions between workers, a partition may belong
to no live member for a while, and repartition topics keep receiving records until every
source partition is done. Committed offsets decide, so a killed run restarted with the same
command finishes the same work without duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from eokafka.config import Settings, admin_config
from eokafka.errors import EokafkaError
from eokafka.runtime.clients import KAFKA, Clients
from eokafka.topology import Topology

if TYPE_CHECKING:
    from eokafka.runtime.worker import Worker

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


def _list_offsets(admin: Any, tps: list[TopicPartition], spec: OffsetSpec) -> dict[TP, int]:
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


class BoundedRun:
    """Consulted by the worker loop: wraps its group consumer and says when to stop."""

    def __init__(self, bounds: Bounds, worker: Worker, clients: Clients) -> None:
        self.bounds = bounds
        self.worker = worker
        self._make_consumer = clients.consumer
        self.clients = clients.replace(consumer=self._consumer)
        self._clock = clients.clock
        self.external = frozenset(external_topics(worker.topology))
        self.internal = sorted(worker.topology.internal_topics)
        self.started = self._clock()
        self.reason = "interrupted"
        self.held: dict[TP, int] = {}  # partition -> first record held back: its position
        self.paused: set[TP] = set()
        self.returning: set[TP] = set()  # paused by this run when they left the assignment
        self.in_txn = 0  # external records handed to the open transaction
        self._next_check = 0.0
        self.real: Any = None

    # -- the wrapped consumer ------------------------------------------------------------

    def _consumer(self, conf: dict[str, Any]) -> _BoundedConsumer:
        if self.bounds.until_end:
            conf = {**conf, "enable.partition.eof": True}
        self.real = self._make_consumer(conf)
        return _BoundedConsumer(self.real, self)

    def end(self, tp: TP) -> int:
        """A partition that did not exist at the start (or was added since) ends at 0."""
        return self.bounds.ends.get(tp, 0)

    def admit(self, msgs: list[Message]) -> list[Message]:
        """The records of a batch that are inside the bounds; notes EOFs and what is held."""
        if self.worker.records_in_txn == 0:
            self.in_txn = 0  # the last transaction committed or aborted
        budget = None
        if self.bounds.max_records is not None:
            budget = self.bounds.max_records - self.committed_in() - self.in_txn
        until_end = self.bounds.until_end
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
            if tp in self.held:
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
        self.held[tp] = offset
        self._pause(tp)
        self._commit_move(tp, offset)

    def _pause(self, tp: TP) -> None:
        if tp not in self.paused:
            self.real.pause([TopicPartition(*tp)])
            self.paused.add(tp)

    def _eof(self, tp: TP, offset: int) -> None:
        """The position moved to ``offset``, maybe over markers: make sure it gets committed."""
        if tp not in self.held:
            self._commit_move(tp, offset)

    def _commit_move(self, tp: TP, offset: int) -> None:
        """A position beyond the committed offset with no record to carry it (markers,
        held records) still has to reach the group: open a transaction for the worker to
        commit, offsets only if nothing else comes."""
        txn = self.worker.txn
        if txn is not None and offset > self.worker.committed.get(tp, -1):
            txn.begin()

    def positions(self, positions: list[TopicPartition]) -> list[TopicPartition]:
        for tp in positions:
            held = self.held.get((tp.topic, tp.partition))
            if held is not None:
                tp.offset = held
        return positions

    def moved(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions were sought or (re)assigned: forget what was held, resume them."""
        resume = []
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.held.pop(key, None)
            if key in self.paused or key in self.returning:
                self.paused.discard(key)
                self.returning.discard(key)
                resume.append(TopicPartition(tp.topic, tp.partition))
        if resume:
            self.real.resume(resume)

    def released(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions left (after the worker committed or aborted them).

        Those this run paused are resumed if they come back: whether librdkafka keeps a
        pause across an assignment is not something to rely on.
        """
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.held.pop(key, None)
            if key in self.paused:
                self.paused.discard(key)
                self.returning.add(key)

    # -- when to stop --------------------------------------------------------------------

    def committed_in(self) -> int:
        return int(sum(_counted(self.worker.metrics.consumed, self.external.__contains__)))

    def committed_out(self) -> int:
        internal = set(self.internal)
        return int(sum(_counted(self.worker.metrics.produced, lambda t: t not in internal)))

    def finished(self) -> bool:
        """Whether the worker should commit and stop now."""
        worker = self.worker
        now = self._clock()
        if self.bounds.max_seconds is not None and now - self.started >= self.bounds.max_seconds:
            self.reason = "max-seconds"
            return True
        if worker.records_in_txn == 0:
            self.in_txn = 0
        limit = self.bounds.max_records
        if limit is not None and self.committed_in() + self.in_txn >= limit:
            self.reason = "max-records"
            return True
        if not self.bounds.until_end or not self._own_done():
            return False
        if (worker.txn is not None and worker.txn.open) or now < self._next_check:
            return False  # let the open transaction commit its positions first
        self._next_check = now + _GROUP_CHECK_EVERY
        if self._group_done():
            self.reason = "end"
            return True
        return False

    def _own_done(self) -> bool:
        """Pause every owned input partition at its end; True when all of them are."""
        worker = self.worker
        owned = [tp for tp in worker.assignment if tp.topic in self.external]
        done = True
        for tp in self.positions(self.real.position(owned)) if owned else []:
            key = (tp.topic, tp.partition)
            offset = tp.offset if tp.offset >= 0 else worker.committed.get(key, -1)
            if offset == OFFSET_BEGINNING:
                offset = self.bounds.starts.get(key, 0)
            if offset >= self.end(key):
                self._pause(key)
            else:
                done = False
        return done

    def _group_done(self) -> bool:
        """Every input partition of the group is committed at its end, whoever owns it."""
        worker = self.worker
        tps = [TopicPartition(t, p) for t, p in self.bounds.ends]
        for topic in self.internal:
            count = worker.topics.partitions(topic) or 0
            tps.extend(TopicPartition(topic, p) for p in range(count))
        if not tps:
            return True
        committed = self._committed(tps)
        if committed is None:
            return False
        outer = [tp for tp in committed if tp.topic in self.external]
        inner = [tp for tp in committed if tp.topic not in self.external]
        if not self._at_ends(outer, self.bounds.starts, self.bounds.ends):
            return False
        if not inner:
            return True
        admin = worker.topics.admin
        # Repartition topics end where their records end now: every source partition is
        # committed at its end, so no transaction still writes to them.
        lows = _list_offsets(admin, inner, OffsetSpec.earliest())
        return self._at_ends(inner, lows, _list_offsets(admin, inner, OffsetSpec.latest()))

    def _committed(self, tps: list[TopicPartition]) -> list[TopicPartition] | None:
        """The group's stable committed offsets, asked through the admin client.

        Not through the group consumer: its OffsetFetch waits for a rebalance to finish,
        which needs this very thread to poll.
        """
        group = self.worker.settings.application_id
        request = [ConsumerGroupTopicPartitions(group, tps)]
        admin = self.worker.topics.admin
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
        earliest = self.worker.settings.auto_offset_reset == "earliest"
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
        return RunSummary(self.committed_in(), self.committed_out(), took, self.reason)


def _counted(counter: Any, wanted: Callable[[str], bool]) -> list[float]:
    """The committed totals of a per-topic Prometheus counter, for the wanted topics."""
    return [
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and wanted(sample.labels.get("topic", ""))
    ]


class _BoundedConsumer:
    """The group consumer as the worker sees it in a bounded run; the rest passes through."""

    def __init__(self, real: Any, run: BoundedRun) -> None:
        self._real = real
        self._run = run

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        return self._run.admit(self._real.consume(num_messages, timeout))

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return self._run.positions(self._real.position(partitions))

    def seek(self, partition: TopicPartition) -> None:
        self._run.moved([partition])
        self._real.seek(partition)

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._run.moved(partitions)
        self._real.assign(partitions)

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        self._run.moved(partitions)
        self._real.incremental_assign(partitions)

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        run = self._run

        def after(
            callback: Callable[[Any, list[TopicPartition]], None], then: Callable[..., None]
        ) -> Callable[..., None]:
            def call(consumer: Any, partitions: list[TopicPartition]) -> None:
                callback(consumer, partitions)  # a revoke commits at the held positions
                then(partitions)

            return call

        wrapped = {
            name: after(cb, run.moved if name == "on_assign" else run.released)
            for name, cb in callbacks.items()
        }
        self._real.subscribe(topics, **wrapped)
