"""Where the query server's thread meets the worker loop, which alone touches the stores.

The server thread puts a query on the desk and waits on its future; the loop, between two
batches (``serve`` in each step), answers every query waiting, from committed state only
(reads.py). Rebalance callbacks run inside the loop's poll, so no answer is made while one is
half done. The loop also publishes a snapshot of its tasks each step (``status``): the health
endpoints read it without waiting for the loop, so a stuck loop is seen as stuck.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from eokafka.runtime.query.reads import (
    KeyQuery,
    ScanQuery,
    WindowQuery,
    lookup,
    scan,
    standby_lookup,
    windows,
)
from eokafka.runtime.query.refusal import QueryError
from eokafka.runtime.tasks.manager import TaskManager
from eokafka.runtime.tasks.standby import StandbyReplicas
from eokafka.runtime.tasks.task import Task, TaskState

Query = KeyQuery | ScanQuery | WindowQuery
RETRY_AFTER_S = 1.0


class NotHere(QueryError):
    """The key's partition is not this worker's now: the server asks its owner."""

    def __init__(self, partition: int) -> None:
        super().__init__(421, f"partition {partition} is not assigned to this worker")
        self.partition = partition


@dataclass(frozen=True)
class TaskStatus:
    name: str
    partition: int
    state: str
    restoring: tuple[str, ...]  # stores still catching up with their changelogs


@dataclass(frozen=True)
class Status:
    """What the loop looked like at its last step (clock: time.monotonic)."""

    polled_at: float
    tasks: tuple[TaskStatus, ...]
    resyncing: bool
    producer_ready: bool

    @property
    def ready(self) -> bool:
        """Every assigned task runs and none restores (an empty assignment is ready)."""
        return (
            self.producer_ready
            and not self.resyncing
            and all(t.state == TaskState.RUNNING.value for t in self.tasks)
        )


class QueryDesk:
    def __init__(
        self,
        tasks: TaskManager,
        resyncing: Callable[[], bool],
        producer_ready: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
        standby: StandbyReplicas | None = None,
    ) -> None:
        self._tasks = tasks
        self._standby = standby
        self._resyncing = resyncing
        self._producer_ready = producer_ready
        self._clock = clock
        self._waiting: queue.SimpleQueue[tuple[Query, Future[dict[str, Any]]]] = (
            queue.SimpleQueue()
        )
        self.status = Status(clock(), (), False, False)

    # -- the server's side ---------------------------------------------------------------

    def ask(self, query: Query) -> Future[dict[str, Any]]:
        """Queue a query for the loop; the future holds the answer or a QueryError."""
        future: Future[dict[str, Any]] = Future()
        self._waiting.put((query, future))
        return future

    # -- the loop's side -----------------------------------------------------------------

    def serve(self) -> None:
        """Publish the tasks' snapshot, then answer every query waiting."""
        tasks = self._tasks.tasks.values()
        resyncing = self._resyncing()
        self.status = Status(
            self._clock(),
            tuple(
                TaskStatus(t.name, t.index, t.state.value, tuple(sorted(t.restores)))
                for t in tasks
            ),
            resyncing,
            self._producer_ready(),
        )
        while True:
            try:
                query, future = self._waiting.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue  # the server gave up waiting
            try:
                future.set_result(self._answer(query, resyncing))
            except QueryError as exc:
                future.set_exception(exc)
            except Exception as exc:  # a serde or backend failure: the request's, not the loop's
                future.set_exception(QueryError(500, f"{type(exc).__name__}: {exc}"))

    def _answer(self, query: Query, resyncing: bool) -> dict[str, Any]:
        try:
            task = self._task(query.store, query.partition)
        except NotHere:
            standby = self._standby
            key = (query.store, query.partition)
            if isinstance(query, KeyQuery) and query.stale and standby is not None:
                replica = standby.standbys.get(key)
                if replica is not None:
                    return standby_lookup(replica, query, standby.lag(key))
            raise
        if resyncing:
            raise QueryError(
                503, "the worker re-syncs its stores with Kafka after a producer re-creation",
                RETRY_AFTER_S,
            )  # fmt: skip
        if task.state is not TaskState.RUNNING:
            raise QueryError(
                503, f"task {task.name} is {task.state.value}: its state is not served now",
                RETRY_AFTER_S,
            )  # fmt: skip
        if isinstance(query, KeyQuery):
            return lookup(task, query)
        if isinstance(query, WindowQuery):
            return windows(task, query)
        return scan(task, query)

    def _task(self, store: str, partition: int) -> Task:
        manager = self._tasks
        group = next((g for g, names in manager.stores_of.items() if store in names), None)
        if group is None:
            raise QueryError(404, f"no store {store!r} in this app")
        task = manager.tasks.get((group, partition))
        if task is None or not task.inputs:  # a suspended task not given back: moving
            raise NotHere(partition)
        return task
