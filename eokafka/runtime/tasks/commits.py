"""The tasks' side of every commit, a participant of the transaction owner (owner.py).

Before the Kafka commit each task sends its stores' last write per key to their changelogs;
after it, the tasks note the committed offsets, apply their stores' overlays with the
changelog offsets they now reflect, and drop poison marks the commit moved past. An abort
drops the overlays; a rewind seeks every input back to its committed offset; after a producer
re-creation (invariant 10) the committed offsets are read again from the group coordinator
and the open stores catch up from their checkpoints to their changelogs' committed end.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaException, TopicPartition

from eokafka.metrics import WorkerMetrics
from eokafka.runtime.commit.participant import Abort, Offsets, Participant
from eokafka.runtime.tasks.manager import TaskManager
from eokafka.runtime.tasks.offsets import CommittedOffsets
from eokafka.runtime.tasks.task import SendChangelog, TaskState

log = logging.getLogger("eokafka.tasks")
_SIZES_EVERY = 5.0  # seconds between store-size gauge refreshes


class TaskCommits(Participant):
    def __init__(
        self,
        manager: TaskManager,
        metrics: WorkerMetrics,
        send_changelog: SendChangelog,
        patience: float,
    ) -> None:
        """``send_changelog``: the record collector's; ``patience``: how long a re-sync
        waits for the group coordinator's offsets before the worker stops."""
        self.manager = manager
        self.metrics = metrics
        self.send_changelog = send_changelog
        self.patience = patience
        self._resync: CommittedOffsets | None = None

    def prepare(self, offsets: Offsets) -> Offsets:
        send = self.send_changelog
        if send is not None:
            for task in self.manager.tasks.values():
                if task.stores:
                    task.send_changelogs(send)
        return offsets

    def committed(self, offsets: Offsets) -> None:
        by_tp = {(tp.topic, tp.partition): tp.offset for tp in offsets}
        for task in self.manager.tasks.values():
            task.commit(by_tp)
        now = time.monotonic()
        if self.manager.loader is not None and now >= self.manager.sizes_due:
            self.manager.sizes_due = now + _SIZES_EVERY  # len() may count on disk
            for task in self.manager.tasks.values():
                for name, store in task.stores.items():
                    if name not in task.restores:
                        self.metrics.store_keys.labels(name, str(task.index)).set(len(store))
        self._update_lag(offsets)

    def aborted(self, abort: Abort) -> None:
        for task in self.manager.tasks.values():
            task.abort()

    def rewind(self) -> None:
        """Seek every assigned input back to its last committed offset; release holds."""
        assert self.manager.consumer is not None
        released = []
        for task in self.manager.tasks.values():
            for tp in sorted(task.inputs):
                offset = task.committed.get(tp)
                if offset is not None:
                    self.manager.consumer.seek(TopicPartition(*tp, offset))
            released.extend(TopicPartition(*tp) for tp in task.held)
            task.held.clear()
            if task.queue is not None:  # its records are read again from the offsets sought
                task.queue.clear()
                released.extend(TopicPartition(*tp) for tp in task.queue.unpause())
        if released:
            self.manager.consumer.resume(released)
        log.info(
            "rewound %d partitions to their committed offsets", len(self.manager.assignment)
        )

    def resync(self) -> bool:
        """Seek to the offsets the group coordinator holds and bring the running tasks'
        stores to their changelogs' committed end; False while the broker can't answer.

        Inputs stay paused until then; afterwards those of tasks whose stores restore (or
        that wait for a co-partitioned input) stay paused until they can run."""
        consumer = self.manager.consumer
        assert consumer is not None
        if self._resync is None:
            cause = "producer re-created"
            self._resync = CommittedOffsets(cause, self.manager.group, self.patience)
        if self.manager.assignment:
            consumer.pause(self.manager.assignment)
        for task in self.manager.tasks.values():
            task.abort()  # suspended tasks' overlays too: nothing survives a re-creation
        tasks = self.manager.tasks.values()
        fallback = {tp: o for t in tasks for tp, o in t.reset_positions.items()}
        found = self._resync.read_offsets(consumer, self.manager.assignment, fallback)
        if found is None:
            return False
        for tp in found:
            consumer.seek(tp)
        try:
            for task in self.manager.tasks.values():
                if task.state in (TaskState.RUNNING, TaskState.RESTORING):
                    self.manager.open_stores(task, only_open=True)
                    if task.state is TaskState.RUNNING and task.restores:
                        task.to(TaskState.RESTORING)
        except KafkaException as exc:  # the changelogs' end offsets, not known yet
            log.warning("re-sync: the stores' catch-up can't start yet (%s); retrying", exc)
            return False
        self.manager.reindex()
        for task in self.manager.tasks.values():
            task.held.clear()
            if task.queue is not None:  # every input is resumed below
                task.queue.unpause()
            task.commit({(tp.topic, tp.partition): tp.offset for tp in found})
        waiting = [
            TopicPartition(*tp)
            for task in self.manager.tasks.values()
            if task.state is not TaskState.RUNNING
            for tp in sorted(task.inputs)
        ]
        if self.manager.assignment:
            consumer.resume(self.manager.assignment)
        if waiting:
            consumer.pause(waiting)
        restoring = sum(len(t.restores) for t in self.manager.tasks.values())
        log.warning(
            "re-synced after the producer was re-created in %.2f s: sought to the group's "
            "committed offsets %s; %d store(s) catching up from their changelogs",
            time.monotonic() - self._resync.since,
            ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in found) or "-",
            restoring,
        )
        self._resync = None
        return True

    def _update_lag(self, offsets: Offsets) -> None:
        consumer = self.manager.consumer
        if consumer is None:
            return
        for tp in offsets:
            _, high = consumer.get_watermark_offsets(tp, cached=True) or (None, None)
            if high is not None and high >= 0:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - tp.offset))
