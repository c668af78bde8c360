"""One task: one partition index of a group of co-partitioned input topics.

A task owns its input partitions (those this worker is assigned now), the keys of its
stores, the offsets last committed for its inputs (and where the auto offset reset put
those the group never committed), and its place in the lifecycle::

    created -> restoring -> running -> suspended -> (restoring | closed)

Its *topics* are the input topics that share a store with each other (transitively): they
must be served together, so the task runs only while this worker owns partition ``index``
of every one of them. A topic that uses no store is a group of its own, a task without
stores. Rebalance callbacks move tasks between states; the worker loop does the work the
states call for (restore steps, resuming inputs, closing tasks that were not given back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from eokafka.errors import EokafkaError

TP = tuple[str, int]
StoreKey = tuple[str, int]  # (store name, partition)


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


@dataclass
class Task:
    index: int  # the partition index
    topics: frozenset[str]  # the co-partitioned input topics it needs, all of them
    stores: tuple[str, ...]  # names of the stores it owns (instance ``index`` of each)
    state: TaskState = TaskState.CREATED
    inputs: set[TP] = field(default_factory=set)  # assigned to this worker now
    committed: dict[TP, int] = field(default_factory=dict)
    reset_positions: dict[TP, int] = field(default_factory=dict)
    suspended_at: float = 0.0

    @property
    def name(self) -> str:
        return f"{'+'.join(sorted(self.topics))}[{self.index}]"

    @property
    def store_keys(self) -> list[StoreKey]:
        return [(name, self.index) for name in self.stores]

    @property
    def complete(self) -> bool:
        """Whether this worker owns every co-partitioned input of the task."""
        return len(self.inputs) == len(self.topics)

    def to(self, state: TaskState) -> None:
        if state not in _ALLOWED[self.state]:
            raise TaskStateError(
                f"task {self.name}: no transition from {self.state.value} to {state.value}"
            )
        self.state = state

    def add_input(self, tp: TP, committed: int, reset: int | None) -> None:
        if tp[0] not in self.topics or tp[1] != self.index:
            raise TaskStateError(f"task {self.name}: {tp[0]}[{tp[1]}] is not one of its inputs")
        self.inputs.add(tp)
        self.committed[tp] = committed
        if reset is not None:
            self.reset_positions[tp] = reset

    def remove_input(self, tp: TP) -> None:
        """An input left: what was committed for it is re-read if it comes back."""
        self.inputs.discard(tp)
        self.committed.pop(tp, None)
        self.reset_positions.pop(tp, None)
