"""The wall clock's work, from the worker loop, for running tasks, in the open transaction:
processors' wall-clock timers (eokafka/timers.py) and windowed aggregations that close
windows on idle partitions (``window(close_on_idle_ms=)``, eokafka/dsl/windowed.py).

Stream-time timers and window closes happen inside the processing of the record that moved
stream time; these have no record. Once per loop step this asks each running task whether
anything is due at the wall clock (a comparison or two per timer store and idle window),
binds the processor context to the task, lets it fire or close, and produces its sends into
the transaction (opened if need be). A refused send dooms the transaction (there is no input
record to dead-letter it for), and a raising callback stops the worker (TimerError).

A task is idle since its last record was processed, or since it started running here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from confluent_kafka import KafkaException

from eokafka.context import ProcessorContext
from eokafka.runtime.commit.collector import RecordCollector
from eokafka.runtime.commit.errors import RecordFailed
from eokafka.runtime.commit.owner import TransactionOwner
from eokafka.runtime.tasks.manager import Run, TaskManager
from eokafka.runtime.tasks.task import Task, TaskState
from eokafka.state import TimerStore
from eokafka.timers import TimerError
from eokafka.topology import Topology


class WallClock:
    def __init__(
        self,
        topology: Topology,
        tasks: TaskManager,
        ctx: ProcessorContext,
        owner: TransactionOwner,
        collector: RecordCollector,
        wall_ms: Callable[[], int],
    ) -> None:
        self.timers = dict(topology.timers)
        self.idle_windows = dict(topology.idle_windows)
        self.tasks = tasks
        self.ctx = ctx
        self.owner = owner
        self.collector = collector
        self.wall_ms = wall_ms

    def active(self, runs: Iterable[Run]) -> None:
        """Tasks that just processed records are not idle."""
        if self.idle_windows:
            now = self.wall_ms()
            for task, _, _ in runs:
                if task is not None:
                    task.active_ms = now

    def step(self) -> None:
        """Fire the wall-clock timers due now, and close the windows of idle partitions."""
        now = self.wall_ms()
        for task in list(self.tasks.tasks.values()):
            if task.state is not TaskState.RUNNING:
                continue
            for name, timers in self.timers.items():
                store = task.stores.get(name)
                if isinstance(store, TimerStore) and timers.wall_due(store, now):
                    self._bind(task)
                    timers.fire_wall_clock(self.ctx, now)
                    self._produce(now)
            if self.idle_windows:
                self._idle(task, now)

    def _idle(self, task: Task, now: int) -> None:
        if task.active_ms is None:
            task.active_ms = now
        idle_for = now - task.active_ms
        for name, closer in self.idle_windows.items():
            limit = closer.close_on_idle_ms
            if name not in task.stores or limit is None or idle_for < limit:
                continue
            self._bind(task)
            try:
                moved = closer.close_idle(self.ctx, task.active_ms, now)
            except Exception as exc:
                self.ctx.pending.clear()
                raise TimerError(
                    f"windowed aggregation {name!r}, partition {task.index}: closing windows "
                    f"on idle raised {type(exc).__name__}: {exc}"
                ) from exc
            if moved is not None:
                self._produce(moved)

    def _bind(self, task: Task) -> None:
        self.owner.begin()
        self.ctx.bind(task.index, task.stores)

    def _produce(self, default_ts: int) -> None:
        """The sends into the open transaction (unstamped ones at ``default_ts``); a refusal
        aborts it."""
        pending = self.ctx.pending
        produced = self.owner.tally.produced
        try:
            for topic, value, key, partition, ts, headers in pending:
                stamp = default_ts if ts is None else ts
                self.collector.produce(topic, value, key, partition, stamp, headers)
                produced[topic] += 1
        except KafkaException as exc:
            err = exc.args[0]
            self.owner.note_failure(err)
            raise RecordFailed(err.name(), f"a send without input record: {err.str()}") from exc
        finally:
            pending.clear()
