"""What the worker does when the group moves partitions: the rebalance callbacks.

They only change task states (tasks/manager.py), plus what must happen before partitions
leave or right when they arrive (invariant 7): commit the open transaction on revoke, abort it
when partitions are lost. What was assigned stays paused until its committed offsets are
known: read at once when the group coordinator answers at once, else from the loop
(``read_offsets``), which keeps polling the group meanwhile. A previous owner's transaction
still open on those offsets (a zombie, a paused process) holds the answer until the broker
aborts it, which takes that producer's transaction.timeout.ms. The work the new states call
for (restores, resuming inputs, closing tasks not given back) is the loop's.

``protocol`` is how partitions move (client_configs.rebalance_protocol): ``eager`` (classic
range: every member gives up everything, then gets its whole new assignment) or incremental,
``cooperative`` (classic cooperative-sticky) and ``consumer`` (KIP-848): only what moves is
revoked, with ``incremental_assign`` / ``incremental_unassign``, and the rest keeps running.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from eokafka.metrics import WorkerMetrics
from eokafka.runtime.commit.owner import TransactionOwner
from eokafka.runtime.commit.poison_policy import PoisonPolicy
from eokafka.runtime.commit.sinks import SinkSet
from eokafka.runtime.tasks.manager import TaskManager
from eokafka.runtime.tasks.offsets import CommittedOffsets

log = logging.getLogger("eokafka.worker")
_RPC_TIMEOUT = 30.0
_FIRST_READ_S = 2.0  # the committed offsets read inside the assign callback
TP = tuple[str, int]


class Rebalance:
    """The group consumer's rebalance callbacks; the collaborators it moves are given here."""

    def __init__(
        self,
        protocol: str,
        auto_offset_reset: str,
        owner: TransactionOwner,
        tasks: TaskManager,
        sinks: SinkSet,
        poison: PoisonPolicy,
        metrics: WorkerMetrics,
        replan: Callable[[], None],
        consumer: Consumer,
        group: str,
        patience: float,
    ) -> None:
        """``replan``: place standby replicas again after any change of tasks; ``patience``:
        how long assigned inputs may wait for their committed offsets."""
        self.protocol = protocol
        self.incremental = protocol != "eager"
        self.auto_offset_reset = auto_offset_reset
        self.owner = owner
        self.tasks = tasks
        self.sinks = sinks
        self.poison = poison
        self.metrics = metrics
        self.replan = replan
        self.consumer = consumer
        self.group = group
        self.patience = patience
        self._offsets: CommittedOffsets | None = None  # a read under way

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Tasks given (back): their inputs start at their committed offsets, read here when
        the coordinator answers at once (assigned with them: fetching starts right away),
        else assigned paused until the loop has read them; kept stores resume from their
        checkpoints; tasks not given back are closed once the rebalance settled
        (manager.py)."""
        self.metrics.rebalances.labels("assign").inc()
        self.tasks.assigned(partitions)
        self.tasks.settle()
        self.replan()
        log.info("assigned %s", _names(partitions))
        found = self._read(_FIRST_READ_S)
        given = {(tp.topic, tp.partition) for tp in partitions}
        if found is None:
            # Paused until their committed offsets are known, then sought there. Assigned at
            # an explicit offset, so that librdkafka starts them at once instead of waiting
            # on its own fetch of the committed offsets (a seek is refused meanwhile).
            at = [TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in partitions]
            self._assign(consumer, at)
            if partitions:
                consumer.pause(partitions)
            return
        reset = self._starts(found)
        start = {(tp.topic, tp.partition): tp.offset for tp in found}  # every input given
        at = [TopicPartition(t.topic, t.partition, start[(t.topic, t.partition)])
              for t in partitions]  # fmt: skip
        self._assign(consumer, at)
        self._known(found, reset, given)

    def read_offsets(self, attempt_s: float) -> None:
        """One try (from the loop) at the committed offsets of the inputs that await them:
        on an answer, seek there and go on as an assignment that read them at once."""
        found = self._read(attempt_s)
        if found is not None:
            self._known(found, self._starts(found), set())

    def _read(self, attempt_s: float) -> list[TopicPartition] | None:
        """The awaiting inputs' committed offsets, or None while the coordinator has not
        answered; an error if it has not within ``patience``."""
        awaiting = self.tasks.awaiting
        if not awaiting:
            self._offsets = None
            return None
        if self._offsets is None:
            self._offsets = CommittedOffsets("assigned", self.group, self.patience)
        found = self._offsets.read_offsets(self.consumer, awaiting, {}, attempt_s)
        if found is not None:
            self._offsets = None
        return found

    def _starts(self, found: list[TopicPartition]) -> dict[TP, int]:
        """Where inputs the group never committed start (the auto offset reset), set in
        ``found``; returned by input."""
        reset: dict[TP, int] = {}
        for tp in found:
            if tp.offset < 0:
                if self.auto_offset_reset == "earliest":
                    tp.offset = OFFSET_BEGINNING
                else:
                    tp.offset = self.consumer.get_watermark_offsets(tp, timeout=_RPC_TIMEOUT)[1]
                reset[(tp.topic, tp.partition)] = tp.offset
        return reset

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.incremental:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)

    def _known(self, found: list[TopicPartition], reset: dict[TP, int], given: set[TP]) -> None:
        """Offsets known: inputs assigned earlier (paused) seek there, ``given`` ones were
        assigned with them; their tasks start, those that can run resume, those that restore
        or wait for a co-partitioned input stay paused; prepared sink writes are resolved."""
        consumer = self.consumer
        for tp in found:
            if (tp.topic, tp.partition) not in given:
                consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset))
        to_pause = self.tasks.offsets_known(found, reset)
        paused = {(tp.topic, tp.partition) for tp in to_pause}
        ready = [TopicPartition(tp.topic, tp.partition) for tp in found
                 if (tp.topic, tp.partition) not in paused | given]  # fmt: skip
        if ready:
            consumer.resume(ready)
        if to_pause:
            consumer.pause(to_pause)  # until their stores caught up, or their partner came
        plain = [TopicPartition(tp.topic, tp.partition) for tp in found]
        self.sinks.recover(plain, found)
        self.replan()

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit everything in the open transaction before partitions leave; suspend their
        tasks. Under an incremental protocol the other tasks go on (an abort rewinds them)."""
        self.metrics.rebalances.labels("revoke").inc()
        if self.owner.open:
            self.owner.commit(stays=self.incremental)
        self._release(consumer, partitions)
        log.info("revoked %s", _names(partitions))

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Abort (the partitions may be someone else's already), then go back to the last
        commit with those that stay."""
        self.metrics.rebalances.labels("lost").inc()
        aborted = self.owner.open
        if aborted:
            self.owner.abort("partitions-lost", stays=False)
        self._release(consumer, partitions)
        if aborted and self.incremental:
            self.owner.rewind()
        log.warning("lost %s; their open transaction was aborted", _names(partitions))

    def _release(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        waiting = self.tasks.revoked(partitions)
        if self.incremental:
            consumer.incremental_unassign(partitions)
            if waiting:
                consumer.pause(waiting)  # a co-partitioned input left: the task can't run
        self.poison.forget()
        self.metrics.forget_partitions(sorted((tp.topic, tp.partition) for tp in partitions))
        self.replan()


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"
