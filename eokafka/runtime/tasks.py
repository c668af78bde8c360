"""The tasks of one worker: which task an input partition belongs to, and their states.

The rebalance callbacks tell this manager what was assigned, revoked or lost; it moves the
tasks between states (task.py) and says which inputs to pause. The worker loop then asks it
to resume the inputs of tasks whose restore finished, and to close suspended tasks nobody
gave back.

When is a rebalance settled, so that a suspended task not given back can be closed? Under
the eager protocol every assignment is complete: at the end of the assign callback. Under an
incremental protocol (cooperative-sticky, KIP-848 ``group.protocol=consumer``) a partition
is revoked in one callback and given to its new owner afterwards, so it is not coming back
to this worker in that rebalance: suspended tasks without inputs are closed at the next
assign callback, or ``settle_s`` after their suspension if no such callback comes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from confluent_kafka import KafkaException, TopicPartition

from eokafka.errors import EokafkaError
from eokafka.runtime.stores import StoreTasks
from eokafka.runtime.task import TP, Task, TaskState
from eokafka.state import StoreLockedError
from eokafka.topology import Topology

log = logging.getLogger("eokafka.tasks")
SETTLE_S = 5.0
RETRY_S = 0.5
# A just created changelog has no leader for a moment, and the worker a task comes from may
# still hold its store's files on a shared state directory until it closes the task; a gone
# changelog or a stuck worker never lets go.
OPEN_PATIENCE_S = 60.0
TaskId = tuple[frozenset[str], int]


def copartitioned_groups(topology: Topology) -> dict[str, frozenset[str]]:
    """Each input topic's group: the topics it shares a store with, transitively."""
    by_topic = topology.store_names_by_topic()
    group = {topic: {topic} for topic in topology.topics}
    for store in topology.stores:
        users = [t for t, names in by_topic.items() if store in names and t in group]
        merged = set().union(*(group[t] for t in users)) if users else set()
        for topic in merged:
            group[topic] = merged
    return {topic: frozenset(topics) for topic, topics in group.items()}


def spans_topics(topology: Topology) -> bool:
    """Whether some store (a join, a multi-topic aggregation) is fed by two input topics:
    then only an assignor that keeps partition p of each topic on one member will do."""
    return any(len(g) > 1 for g in copartitioned_groups(topology).values())


class Tasks:
    def __init__(
        self,
        topology: Topology,
        state: StoreTasks | None,
        clock: Callable[[], float] = time.monotonic,
        settle_s: float = SETTLE_S,
    ) -> None:
        self.state = state
        self.clock = clock
        self.settle_s = settle_s
        self.groups = copartitioned_groups(topology)
        by_topic = topology.store_names_by_topic()
        self.stores_of = {
            topics: tuple(sorted(set().union(*(by_topic.get(t, set()) for t in topics))))
            for topics in set(self.groups.values())
        }
        self.tasks: dict[TaskId, Task] = {}
        self.assignment: list[TopicPartition] = []
        self.restoring = False  # some task is restoring: the loop steps the restore
        self.unsettled = False  # some suspended task was not given back (yet)
        # Restoring tasks whose restore could not be decided yet (the changelog's offsets
        # unknown for a moment), with when they first failed: the loop tries again.
        self.unopened: dict[TaskId, float] = {}
        self._retry_at = 0.0

    # -- what the worker reads -----------------------------------------------------------

    def committed(self) -> dict[TP, int]:
        """The offsets last committed for every assigned input (for rewinds and marks)."""
        return {tp: o for task in self.tasks.values() for tp, o in task.committed.items()}

    def reset_positions(self) -> dict[TP, int]:
        return {tp: o for task in self.tasks.values() for tp, o in task.reset_positions.items()}

    def note_committed(self, positions: Iterable[TopicPartition]) -> None:
        for tp in positions:
            task = self.tasks.get((self.groups[tp.topic], tp.partition))
            if task is not None and (tp.topic, tp.partition) in task.inputs:
                task.committed[(tp.topic, tp.partition)] = tp.offset

    def _task(self, topic: str, partition: int) -> Task:
        group = self.groups[topic]
        task = self.tasks.get((group, partition))
        if task is None:
            task = Task(partition, group, self.stores_of[group])
            self.tasks[(group, partition)] = task
        return task

    def _index(self) -> None:
        self.assignment = [
            TopicPartition(*tp) for task in self.tasks.values() for tp in sorted(task.inputs)
        ]
        self.restoring = any(t.state is TaskState.RESTORING for t in self.tasks.values())
        self.unsettled = any(
            t.state is TaskState.SUSPENDED and not t.inputs for t in self.tasks.values()
        )

    # -- rebalance callbacks -------------------------------------------------------------

    def assigned(
        self, partitions: list[TopicPartition], reset: dict[TP, int]
    ) -> list[TopicPartition]:
        """Inputs were added (with their committed offsets); return the inputs to pause:
        those of tasks that restore, or that wait for a co-partitioned input."""
        touched: dict[TaskId, Task] = {}
        for tp in partitions:
            task = self._task(tp.topic, tp.partition)
            key = (tp.topic, tp.partition)
            task.add_input(key, tp.offset, reset.get(key))
            touched[(task.topics, task.index)] = task
        to_pause: list[TopicPartition] = []
        for task in touched.values():
            if task.complete and task.state in (TaskState.CREATED, TaskState.SUSPENDED):
                self._start(task)
            if task.state is not TaskState.RUNNING:
                to_pause.extend(TopicPartition(*tp) for tp in sorted(task.inputs))
        self._index()
        return to_pause

    def _start(self, task: Task) -> None:
        came_back = task.state is TaskState.SUSPENDED
        task.to(TaskState.RESTORING)
        self._open(task)
        if came_back and task.state is not TaskState.RESTORING:
            log.info("task %s resumed with its open stores, up to date", task.name)

    def _open(self, task: Task) -> None:
        """Open the task's stores and decide their restore; RUNNING if nothing to read."""
        tid = (task.topics, task.index)
        try:
            restoring = self.state.open(task.store_keys) if self.state is not None else []
        except (KafkaException, StoreLockedError) as exc:
            if isinstance(exc, KafkaException):
                why = f"the changelog offsets of its stores could not be read ({exc.args[0].str()})"
            else:  # the worker the task comes from has not closed its copy yet
                why = f"a store's files are held by another process or handle ({exc})"
            if tid not in self.unopened:
                log.warning("task %s: its restore can't start yet: %s; retrying", task.name, why)
            first = self.unopened.setdefault(tid, self.clock())
            self._retry_at = self.clock() + RETRY_S
            if self.clock() - first >= OPEN_PATIENCE_S:
                raise EokafkaError(
                    f"task {task.name} (stores {', '.join(task.stores)}) could not start for "
                    f"{OPEN_PATIENCE_S:.0f} s: {why}"
                ) from None
            return
        self.unopened.pop(tid, None)
        if not restoring:
            task.to(TaskState.RUNNING)

    def revoked(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """Inputs left (after the commit, or the abort when lost): their tasks are suspended,
        stores kept open. Returns inputs still assigned whose task can't run now."""
        touched: dict[TaskId, Task] = {}
        for tp in partitions:
            task = self.tasks.get((self.groups[tp.topic], tp.partition))
            if task is None:
                continue
            task.remove_input((tp.topic, tp.partition))
            touched[(task.topics, task.index)] = task
        to_pause: list[TopicPartition] = []
        for tid, task in touched.items():
            if task.state in (TaskState.RUNNING, TaskState.RESTORING):
                if self.state is not None:
                    self.state.suspend(task.store_keys)
                task.to(TaskState.SUSPENDED)
                task.suspended_at = self.clock()
            elif task.state is TaskState.CREATED and not task.inputs:
                task.to(TaskState.CLOSED)
                del self.tasks[tid]
            to_pause.extend(TopicPartition(*tp) for tp in sorted(task.inputs))
        self._index()
        return to_pause

    def settle(self, now: float | None = None) -> list[Task]:
        """Close suspended tasks that were not given back: all of them (``now`` None, an
        assign callback), or those suspended ``settle_s`` ago (the loop)."""
        closed = []
        for tid, task in list(self.tasks.items()):
            if task.state is not TaskState.SUSPENDED or task.inputs:
                continue
            if now is not None and now - task.suspended_at < self.settle_s:
                continue
            self._close(tid, task)
            closed.append(task)
        if closed:
            log.info("closed tasks not given back: %s", ", ".join(t.name for t in closed))
            self._index()
        return closed

    def _close(self, tid: TaskId, task: Task) -> None:
        if self.state is not None and task.state is not TaskState.CREATED:
            self.state.close_stores(task.store_keys)
        task.to(TaskState.CLOSED)
        del self.tasks[tid]

    # -- the loop ------------------------------------------------------------------------

    def restored(self) -> list[TopicPartition]:
        """Inputs of tasks whose stores have caught up: resume them."""
        ready: list[TopicPartition] = []
        for tid in list(self.unopened) if self.clock() >= self._retry_at else ():
            task = self.tasks.get(tid)
            if task is None or task.state is not TaskState.RESTORING:
                del self.unopened[tid]
                continue
            self._open(task)
            if task.state is TaskState.RUNNING:
                ready.extend(TopicPartition(*tp) for tp in sorted(task.inputs))
        restoring = self.state.restoring if self.state is not None else {}
        for task in self.tasks.values():
            if task.state is TaskState.RESTORING and (task.topics, task.index) not in self.unopened:
                if not any(key in restoring for key in task.store_keys):
                    task.to(TaskState.RUNNING)
                    ready.extend(TopicPartition(*tp) for tp in sorted(task.inputs))
        self._index()
        return ready

    def resync(self) -> list[TopicPartition]:
        """After a producer reset the running tasks' stores catch up from their checkpoints;
        returns every input that must stay paused (restoring, or waiting for a partner)."""
        active = [
            t for t in self.tasks.values() if t.state in (TaskState.RUNNING, TaskState.RESTORING)
        ]
        if self.state is not None:
            self.state.aborted()  # suspended tasks' overlays too: nothing survives a reset
            restoring = set(self.state.resync([k for t in active for k in t.store_keys]))
            for task in active:
                if task.state is TaskState.RUNNING and restoring & set(task.store_keys):
                    task.to(TaskState.RESTORING)
        self._index()
        return [
            TopicPartition(*tp)
            for task in self.tasks.values()
            if task.state is not TaskState.RUNNING
            for tp in sorted(task.inputs)
        ]

    def close(self) -> None:
        """The worker stops: every task is closed, with its stores."""
        for tid, task in list(self.tasks.items()):
            self._close(tid, task)
        self._index()
        if self.state is not None:
            self.state.close()
