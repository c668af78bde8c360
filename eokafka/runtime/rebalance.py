"""What the worker does when the group moves partitions: the rebalance callbacks.

They only change task states (tasks.py), plus what must happen before partitions leave or
right when they arrive (invariant 7): commit the open transaction on revoke, abort it when
partitions are lost, read the committed offsets of what was assigned. The work the new
states call for (restores, resuming inputs, closing tasks not given back) is the loop's.

``protocol`` is how partitions move (config.rebalance_protocol): ``eager`` (classic range:
every member gives up everything, then gets its whole new assignment) or incremental,
``cooperative`` (classic cooperative-sticky) and ``consumer`` (KIP-848): only what moves is
revoked, with ``incremental_assign`` / ``incremental_unassign``, and the rest keeps running.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from eokafka.runtime.transactions import TransactionAborted

if TYPE_CHECKING:
    from eokafka.runtime.worker import Worker

log = logging.getLogger("eokafka.worker")
_RPC_TIMEOUT = 30.0
TP = tuple[str, int]


class Rebalance:
    def __init__(self, worker: Worker, protocol: str) -> None:
        self.worker = worker
        self.protocol = protocol

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Tasks given (back): kept stores resume from their checkpoints; those not given
        back are closed once the rebalance settled (tasks.py)."""
        w = self.worker
        w.metrics.rebalances.labels("assign").inc()
        committed = consumer.committed(partitions, timeout=_RPC_TIMEOUT) if partitions else []
        reset: dict[TP, int] = {}
        for tp in committed:
            if tp.offset < 0:
                if w.settings.auto_offset_reset == "earliest":
                    tp.offset = OFFSET_BEGINNING
                else:
                    tp.offset = consumer.get_watermark_offsets(tp, timeout=_RPC_TIMEOUT)[1]
                reset[(tp.topic, tp.partition)] = tp.offset
        if self.protocol == "eager":
            consumer.assign(committed)
        else:
            consumer.incremental_assign(committed)
        to_pause = w.tasks.assigned(committed, reset)
        if to_pause:
            consumer.pause(to_pause)  # until their stores caught up, or their partner came
        w.sinks.recover([TopicPartition(tp.topic, tp.partition) for tp in committed])
        w.tasks.settle()
        w.replan_standbys()
        log.info("assigned %s", _names(committed))

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit everything in the open transaction before partitions leave; suspend their
        tasks. Under an incremental protocol the other tasks go on (an abort rewinds them)."""
        w = self.worker
        w.metrics.rebalances.labels("revoke").inc()
        incremental = self.protocol != "eager"
        if w.txn is not None and w.txn.open:
            w._commit(rewind_on_abort=incremental)
        self._release(consumer, partitions)
        log.info("revoked %s", _names(partitions))

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        w = self.worker
        w.metrics.rebalances.labels("lost").inc()
        aborted = w.txn is not None and w.txn.open
        if aborted:
            assert w.txn is not None
            try:
                w.txn.abort("partitions-lost")
            except TransactionAborted:
                pass
        self._release(consumer, partitions)
        if aborted:
            w._after_abort("partitions-lost", rewind=self.protocol != "eager")
        log.warning("lost %s; their open transaction was aborted", _names(partitions))

    def _release(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        w = self.worker
        gone = {(tp.topic, tp.partition) for tp in partitions}
        waiting = w.tasks.revoked(partitions)
        if self.protocol != "eager":
            consumer.incremental_unassign(partitions)
            if waiting:
                consumer.pause(waiting)  # a co-partitioned input left: the task can't run
        w.poison.forget(gone)
        w.metrics.forget_partitions(sorted(gone))
        w.replan_standbys()


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"
