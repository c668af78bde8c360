"""The tasks of one worker: which task an input belongs to, their states, and their commits.

The rebalance callbacks tell the manager what was assigned, revoked or lost; it moves the
tasks between states (task.py) and says which inputs to pause. An assigned input waits for
its committed offset (``awaiting``), read from the group coordinator in the loop when the
callback could not get it at once: a previous owner's transaction still open on its offsets
holds the answer until the broker resolves it. The worker loop asks the manager for the runs
of a batch, task by task, for one restore step (the inputs of tasks whose stores caught up
are resumed), and to close suspended tasks nobody gave back. The tasks' side of every commit
is commits.py's.

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
from collections.abc import Callable, Iterator
from itertools import groupby

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from eokafka.errors import EokafkaError
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.commit.abort_loop import Mark, Position
from eokafka.runtime.tasks.changelog_reader import ChangelogReader
from eokafka.runtime.tasks.groups import copartitioned_groups
from eokafka.runtime.tasks.ordering import Ordering
from eokafka.runtime.tasks.store_loader import StoreLoader
from eokafka.runtime.tasks.task import Task, TaskState
from eokafka.state import StoreLockedError
from eokafka.topology import Topology

log = logging.getLogger("eokafka.tasks")
SETTLE_S = 5.0
RETRY_S = 0.5
# A just created changelog has no leader for a moment, and the worker a task comes from may
# still hold its store's files on a shared state directory until it closes the task; a gone
# changelog or a stuck worker never lets go.
OPEN_PATIENCE_S = 60.0
_RESTORE_WAIT_S = 0.01  # consume() waits this long even with records ready: a restore's floor
TP = tuple[str, int]
TaskId = tuple[frozenset[str], int]
Run = tuple[Task | None, str, list[Message]]  # records of one input partition, its task


class TaskManager:
    def __init__(
        self,
        topology: Topology,
        consumer: Consumer | None,
        metrics: WorkerMetrics,
        group: str,
        loader: StoreLoader | None = None,
        reader: ChangelogReader | None = None,
        clock: Callable[[], float] = time.monotonic,
        settle_s: float = SETTLE_S,
        max_task_idle_ms: int = -1,
    ) -> None:
        """``max_task_idle_ms`` >= 0: tasks with several inputs process their records in
        timestamp order across them (ordering.py)."""
        self.consumer = consumer
        self.metrics = metrics
        self.group = group
        self.loader = loader
        self.reader = reader
        self.clock = clock
        self.settle_s = settle_s
        self.groups = copartitioned_groups(topology)
        ordered = max_task_idle_ms >= 0 and any(len(g) > 1 for g in self.groups.values())
        self.ordering = Ordering(consumer, clock, max_task_idle_ms) if ordered else None
        self.only_topic = topology.topics[0] if len(topology.topics) == 1 else None
        by_topic = topology.store_names_by_topic()
        self.stores_of = {
            topics: tuple(sorted(set().union(*(by_topic.get(t, set()) for t in topics))))
            for topics in set(self.groups.values())
        }
        self.changelogs = loader.changelogs if loader is not None else {}
        self.tasks: dict[TaskId, Task] = {}
        self.by_input: dict[TP, Task] = {}  # the task of each assigned input
        self.assignment: list[TopicPartition] = []  # assigned inputs with known offsets
        self.awaiting: list[TopicPartition] = []  # assigned inputs awaiting their offsets
        self.restoring = False  # some task is restoring: the loop steps the restore
        self.unsettled = False  # some suspended task was not given back (yet)
        # Restoring tasks whose restore could not be decided yet (the changelog's offsets
        # unknown for a moment), with when they first failed: the loop tries again.
        self.unopened: dict[TaskId, float] = {}
        self._retry_at = 0.0
        self.sizes_due = 0.0  # when the store-size gauges are due (0: at the next commit)

    # -- what others read ----------------------------------------------------------------

    def committed_offsets(self) -> dict[TP, int]:
        """The offsets last committed for every assigned input (for rewinds and marks)."""
        return {tp: o for task in self.tasks.values() for tp, o in task.committed.items()}

    def positions(self) -> list[TopicPartition]:
        """The offsets a commit sends: each input's position, or where a bounded run holds it."""
        if not self.assignment:
            return []
        assert self.consumer is not None
        out = [tp for tp in self.consumer.position(self.assignment) if tp.offset >= 0]
        by_input = self.by_input
        for tp in out:
            key = (tp.topic, tp.partition)
            held = by_input[key].resume_offset(key)
            if held is not None:
                tp.offset = held
        return out

    def position_map(self) -> dict[TP, int]:
        return {(tp.topic, tp.partition): tp.offset for tp in self.positions()}

    def marks_of(self, topic: str, partition: int) -> dict[Position, Mark]:
        """The poison marks of an input's task (a throwaway map if it is not here)."""
        task = self.by_input.get((topic, partition))
        return task.marks if task is not None else {}

    def indexes(self) -> set[int]:
        """The partition indexes this worker has tasks of (standbys go elsewhere)."""
        return {task.index for task in self.tasks.values()}

    def runs(self, msgs: list[Message], limit: int | None = None) -> Iterator[Run]:
        """A batch cut into runs of one input partition, each with its task (None: error
        events, or a partition that is no longer this worker's) and its topic. The records
        of a task with several inputs go through its queue: they come out in timestamp
        order across its inputs, maybe in a later call (ordering.py); at most ``limit``
        records come out of the queues (``msgs`` already holds no more than that)."""
        by_input = self.by_input
        topic = self.only_topic
        if topic is not None:  # one input topic: every record is of it (errors aside)
            for partition, records in groupby(msgs, Message.partition):
                yield by_input.get((topic, partition)), topic, list(records)
            return
        ordering = self.ordering
        for topic, run in groupby(msgs, Message.topic):
            for partition, records in groupby(run, Message.partition):
                task = by_input.get((topic, partition))
                if task is None or task.queue is None or ordering is None:
                    out = list(records)
                    if limit is not None:
                        limit -= len(out)
                    yield task, topic, out
                    continue
                errors = ordering.enqueue(task, (topic, partition), list(records))
                if errors:
                    yield None, topic, errors
        if ordering is not None and ordering.queued:
            yield from ordering.release(limit)

    def at_end(self, tp: TP) -> None:
        """The consumer's position passed the end of input ``tp`` (a bounded run says)."""
        task = self.by_input.get(tp)
        if task is not None and self.ordering is not None:
            self.ordering.at_end(task, tp)

    # -- rebalance callbacks -------------------------------------------------------------

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Inputs were added: they join their tasks and await their committed offsets
        (``offsets_known``), paused by the caller until then."""
        for tp in partitions:
            self._task(tp.topic, tp.partition).add_input((tp.topic, tp.partition))
        self.reindex()

    def offsets_known(
        self, found: list[TopicPartition], reset: dict[TP, int]
    ) -> list[TopicPartition]:
        """Committed offsets of awaiting inputs (``reset``: where never committed inputs
        start); return the inputs to keep paused: those of tasks that restore, or that wait
        for a co-partitioned input or another offset."""
        touched: dict[TaskId, Task] = {}
        for tp in found:
            key = (tp.topic, tp.partition)
            task = self.by_input.get(key)
            if task is None or key not in task.pending:
                continue  # revoked meanwhile
            task.known(key, tp.offset, reset.get(key))
            touched[(task.topics, task.index)] = task
        to_pause: list[TopicPartition] = []
        for task in touched.values():
            if task.complete and task.state in (TaskState.CREATED, TaskState.SUSPENDED):
                self._start(task)
            if task.state is not TaskState.RUNNING:
                to_pause.extend(TopicPartition(*tp) for tp in sorted(task.inputs))
        self.reindex()
        return to_pause

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
                self._suspend(task)
            elif task.state is TaskState.CREATED and not task.inputs:
                task.to(TaskState.CLOSED)
                del self.tasks[tid]
            to_pause.extend(TopicPartition(*tp) for tp in sorted(task.inputs))
        self.reindex()
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
            self.reindex()
        return closed

    # -- the lifecycle -------------------------------------------------------------------

    def _task(self, topic: str, partition: int) -> Task:
        group = self.groups[topic]
        task = self.tasks.get((group, partition))
        if task is None:
            task = Task(partition, group, self.stores_of[group], self.changelogs)
            if self.ordering is not None and len(group) > 1:
                task.queue = self.ordering.queue()
            self.tasks[(group, partition)] = task
        return task

    def reindex(self) -> None:
        self.by_input = {tp: task for task in self.tasks.values() for tp in task.inputs}
        pending = {tp for task in self.tasks.values() for tp in task.pending}
        self.assignment = [TopicPartition(*tp) for tp in sorted(self.by_input) if tp not in pending]
        self.awaiting = [TopicPartition(*tp) for tp in sorted(pending)]
        self.restoring = any(t.state is TaskState.RESTORING for t in self.tasks.values())
        self.unsettled = any(
            t.state is TaskState.SUSPENDED and not t.inputs for t in self.tasks.values()
        )

    def _start(self, task: Task) -> None:
        came_back = task.state is TaskState.SUSPENDED
        task.to(TaskState.RESTORING)
        self._open(task)
        if came_back and task.state is not TaskState.RESTORING:
            log.info("task %s resumed with its open stores, up to date", task.name)

    def _open(self, task: Task, only_open: bool = False) -> None:
        """Open the task's stores and decide their restores; RUNNING if nothing to read.
        ``only_open``: bring the stores already open forward (a re-sync), open no others."""
        tid = (task.topics, task.index)
        try:
            self.open_stores(task, only_open)
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
                    f"task {task.name} (stores {', '.join(task.store_names)}) could not start "
                    f"for {OPEN_PATIENCE_S:.0f} s: {why}"
                ) from None
            return
        self.unopened.pop(tid, None)
        if not task.restores:
            task.to(TaskState.RUNNING)

    def open_stores(self, task: Task, only_open: bool) -> None:
        """Open the task's stores (``only_open``: only bring forward those open) and start
        the restores they need."""
        loader, reader = self.loader, self.reader
        if loader is None or reader is None:
            return
        for name in task.store_names:
            if name in task.restores:
                continue
            store = task.stores.get(name)
            if store is None:
                if only_open:
                    continue
                store = task.stores[name] = loader.open(name, task.index)
            store, restore = loader.plan(name, task.index, store)
            task.stores[name] = store
            if restore is not None:
                task.restores[name] = restore
                reader.start(restore)
        reader.assign()

    def _suspend(self, task: Task) -> None:
        """An input left, maybe for a moment: the stores stay open with their committed
        state; a restore under way stops where it got to."""
        if self.reader is not None:
            for restore in task.restores.values():
                self.reader.suspend(restore)
            self.reader.assign()
        task.restores.clear()
        task.checkpoints.clear()
        task.to(TaskState.SUSPENDED)
        task.suspended_at = self.clock()

    def _close(self, tid: TaskId, task: Task) -> None:
        """Close a task and its stores for good (not given back, or the worker stops)."""
        if self.reader is not None:
            for restore in task.restores.values():
                self.reader.cancel(restore)
            self.reader.assign()
        if self.loader is not None:
            for name, store in task.stores.items():
                self.loader.close(name, task.index, store)
        task.stores.clear()
        task.restores.clear()
        task.to(TaskState.CLOSED)
        del self.tasks[tid]
        if self.ordering is not None:
            self.ordering.forget(task)

    # -- the loop ------------------------------------------------------------------------

    def restore_step(self) -> list[TopicPartition]:
        """One batch of the restores under way; the inputs of tasks now ready to run."""
        ready: list[TopicPartition] = []
        for tid in list(self.unopened) if self.clock() >= self._retry_at else ():
            task = self.tasks.get(tid)
            if task is None or task.state is not TaskState.RESTORING:
                del self.unopened[tid]
                continue
            self._open(task)
            if task.state is TaskState.RUNNING:
                ready.extend(TopicPartition(*tp) for tp in sorted(task.inputs))
        if self.reader is not None and self.loader is not None:
            done, lost = self.reader.step(_RESTORE_WAIT_S)
            for restore, why in lost:
                task = self._task_of_store(restore.name, restore.partition)
                again = self.loader.restart_in_full(restore, why)
                task.stores[restore.name] = again.store
                task.restores[restore.name] = again
                self.reader.start(again)
            if lost:
                self.reader.assign()
            for restore in done:
                task = self._task_of_store(restore.name, restore.partition)
                task.restores.pop(restore.name, None)
            if done:
                self.sizes_due = 0.0  # len() may scan a persistent store: at the commit
        for task in self.tasks.values():
            if task.state is TaskState.RESTORING and not task.restores:
                if (task.topics, task.index) not in self.unopened:
                    task.to(TaskState.RUNNING)
                    ready.extend(TopicPartition(*tp) for tp in sorted(task.inputs))
        self.reindex()
        return ready

    def _task_of_store(self, name: str, partition: int) -> Task:
        group = next(topics for topics, names in self.stores_of.items() if name in names)
        return self.tasks[(group, partition)]

    def hold(self, tp: TP, offset: int) -> None:
        """A bounded run holds an input at ``offset``: paused, committed no further."""
        task = self.by_input.get(tp)
        if task is not None and tp not in task.held:
            task.held[tp] = offset
            assert self.consumer is not None
            self.consumer.pause([TopicPartition(*tp)])

    # -- the end -------------------------------------------------------------------------

    def close(self) -> None:
        """The worker stops: every task is closed, with its stores."""
        for tid, task in list(self.tasks.items()):
            self._close(tid, task)
        self.reindex()
        if self.reader is not None:
            self.reader.close()
