"""One task: one partition index of a group of co-partitioned input topics, and all it owns.

A task owns everything of its partition index on this worker:

- its input partitions (those this worker is assigned now), the offsets last committed for
  them, where the auto offset reset put those the group never committed, and the positions
  a bounded run holds them at;
- its open stores (instance ``index`` of each store its topics use), the changelog offsets
  their writes of the open transaction were delivered at (their next checkpoints), and the
  restores that bring them up to their changelogs;
- the poison marks of its records (records set aside for the policy on the next replay);
- with several input partitions, the records fetched but not processed yet, released in
  timestamp order across them (record_queue.py);
- its place in the lifecycle::

    created -> restoring -> running -> suspended -> (restoring | closed)

Its *topics* are the input topics that share a store with each other (transitively): they
must be served together, so the task runs only while this worker owns partition ``index``
of every one of them. A topic that uses no store is a group of its own, a task without
stores. Rebalance callbacks move tasks between states (manager.py); the worker loop does the
work the states call for. Nothing here talks to Kafka: the manager does, for all tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from confluent_kafka import KafkaError, Message

from eokafka.errors import EokafkaError
from eokafka.runtime.commit.abort_loop import Mark, Position, marks_ahead
from eokafka.runtime.tasks.changelog_reader import Restore
from eokafka.runtime.tasks.record_queue import RecordQueue
from eokafka.state import Store

TP = tuple[str, int]
Report = Callable[[KafkaError | None, Message], None]
# Sends a store's pending changelog records (topic, partition, records, report of the last).
SendChangelog = Callable[[str, int, Mapping[bytes, bytes | None], Report], int]


class TaskState(Enum):
    CREATED = "created"  # some of its inputs are assigned; stores not opened yet
    RESTORING = "restoring"  # all inputs assigned, paused; stores catching up
    RUNNING = "running"  # inputs resumed, records processed
    SUSPENDED = "suspended"  # an input left: stores stay open with their committed state
    CLOSED = "closed"  # stores closed; the task object is dropped


_ALLOWED: dict[TaskState, frozenset[TaskState]] = {
    TaskState.CREATED: frozenset({TaskState.RESTORING, TaskState.CLOSED}),
    TaskState.RESTORING: frozenset({TaskState.RUNNING, TaskState.SUSPENDED, TaskState.CLOSED}),
    # RUNNING -> RESTORING: a producer re-creation makes the stores catch up from Kafka.
    TaskState.RUNNING: frozenset({TaskState.SUSPENDED, TaskState.RESTORING, TaskState.CLOSED}),
    TaskState.SUSPENDED: frozenset({TaskState.RESTORING, TaskState.CLOSED}),
    TaskState.CLOSED: frozenset(),
}


class TaskStateError(EokafkaError):
    """A transition the lifecycle does not allow: a bug in the runtime, never ignored."""


def checkpoint_after_commit(last_offset: int) -> int:
    """The checkpoint of a store whose last committed changelog record is at ``last_offset``:
    one more for the commit marker that follows it (store_loader.py explains)."""
    return last_offset + 2


@dataclass(eq=False)
class Task:
    index: int  # the partition index
    topics: frozenset[str]  # the co-partitioned input topics it needs, all of them
    store_names: tuple[str, ...]  # the stores it owns (instance ``index`` of each)
    changelogs: Mapping[str, str] = field(default_factory=dict)  # store -> changelog topic
    state: TaskState = TaskState.CREATED
    inputs: set[TP] = field(default_factory=set)  # assigned to this worker now
    pending: set[TP] = field(default_factory=set)  # inputs whose committed offset is unknown
    committed: dict[TP, int] = field(default_factory=dict)
    reset_positions: dict[TP, int] = field(default_factory=dict)
    held: dict[TP, int] = field(default_factory=dict)  # a bounded run's holds: their positions
    stores: dict[str, Store] = field(default_factory=dict)  # open, by store name
    restores: dict[str, Restore] = field(default_factory=dict)  # stores catching up
    checkpoints: dict[str, int] = field(default_factory=dict)  # delivered in the open txn
    marks: dict[Position, Mark] = field(default_factory=dict)
    queue: RecordQueue | None = None  # several inputs: records waiting for timestamp order
    suspended_at: float = 0.0
    active_ms: int | None = None  # wall clock (epoch ms) of its last record, for idle windows

    @property
    def name(self) -> str:
        return f"{'+'.join(sorted(self.topics))}[{self.index}]"

    @property
    def complete(self) -> bool:
        """Whether this worker owns every co-partitioned input of the task, each with its
        committed offset known."""
        return len(self.inputs) == len(self.topics) and not self.pending

    def to(self, state: TaskState) -> None:
        if state not in _ALLOWED[self.state]:
            raise TaskStateError(
                f"task {self.name}: no transition from {self.state.value} to {state.value}"
            )
        self.state = state
        if state is TaskState.RUNNING:
            self.active_ms = None  # idle from now on, until its first record

    # -- inputs --------------------------------------------------------------------------

    def add_input(self, tp: TP) -> None:
        """An input was assigned; its committed offset comes with ``known``."""
        if tp[0] not in self.topics or tp[1] != self.index:
            raise TaskStateError(f"task {self.name}: {tp[0]}[{tp[1]}] is not one of its inputs")
        self.inputs.add(tp)
        self.pending.add(tp)

    def known(self, tp: TP, committed: int, reset: int | None) -> None:
        """An input's committed offset (or, never committed, where the reset put it)."""
        self.pending.discard(tp)
        self.committed[tp] = committed
        if reset is not None:
            self.reset_positions[tp] = reset

    def remove_input(self, tp: TP) -> None:
        """An input left: what was committed, held or marked for it goes with it."""
        self.inputs.discard(tp)
        self.pending.discard(tp)
        self.committed.pop(tp, None)
        self.reset_positions.pop(tp, None)
        self.held.pop(tp, None)
        self.marks = {k: v for k, v in self.marks.items() if k[:2] != tp}
        if self.queue is not None:
            self.queue.drop(tp)

    def resume_offset(self, tp: TP) -> int | None:
        """Where a commit must put ``tp`` when its position went past records not processed
        (queued, or held by a bounded run); None: at its position."""
        held = self.held.get(tp)
        if self.queue is not None:
            queued = self.queue.first_offset(tp)
            if queued is not None and (held is None or queued < held):
                return queued
        return held

    # -- the transaction -----------------------------------------------------------------

    def send_changelogs(self, send: SendChangelog) -> int:
        """The last write per key of each store not restoring, into the open transaction;
        the last record's delivery report gives the store's next checkpoint."""
        sent = 0
        for name, store in self.stores.items():
            if name in self.restores:
                continue
            pending = store.pending_changelog()
            if pending:
                sent += send(self.changelogs[name], self.index, pending, self._delivered(name))
        return sent

    def _delivered(self, name: str) -> Report:
        def report(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                self.checkpoints[name] = checkpoint_after_commit(msg.offset())

        return report

    def commit(self, offsets: Mapping[TP, int]) -> None:
        """Kafka committed: note the offsets, apply each store's overlay with the changelog
        offset it now reflects, drop the marks the commit moved past."""
        for tp in self.inputs:
            offset = offsets.get(tp)
            if offset is not None:
                self.committed[tp] = offset
        for name, store in self.stores.items():
            if name not in self.restores and store.pending_changelog():
                store.commit(self.checkpoints.get(name))
        self.checkpoints.clear()
        if self.marks:
            self.marks = marks_ahead(self.marks, self.committed)

    def abort(self) -> None:
        """The open transaction's store writes are dropped; committed state stays. Queued
        records go too: the inputs are sought back to their committed offsets."""
        for store in self.stores.values():
            store.abort()
        self.checkpoints.clear()
        if self.queue is not None:
            self.queue.clear()
