"""Wall-clock timers: fired from the worker loop, for running tasks, in the open transaction.

Stream-time timers fire inside the processing of the record that moved stream time
(eokafka/timers.py); wall-clock ones have no record, so the loop asks each running task's
timer stores, once per step, whether anything is due at the wall clock (a comparison or
two), binds the processor context to the task, fires what is due and produces the sends
into the transaction (opened if need be). A refused send dooms the transaction: there is no
input record to dead-letter, so the abort and the re-fire follow the abortable-error path.
"""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import KafkaException

from eokafka.context import ProcessorContext
from eokafka.runtime.commit.collector import RecordCollector
from eokafka.runtime.commit.errors import RecordFailed
from eokafka.runtime.commit.owner import TransactionOwner
from eokafka.runtime.tasks.manager import TaskManager
from eokafka.runtime.tasks.task import TaskState
from eokafka.state import TimerStore
from eokafka.topology import Topology


class WallClockTimers:
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
        self.tasks = tasks
        self.ctx = ctx
        self.owner = owner
        self.collector = collector
        self.wall_ms = wall_ms

    def step(self) -> int:
        """Fire the wall-clock timers due now on every running task; how many fired."""
        if not self.timers:
            return 0
        now = self.wall_ms()
        fired = 0
        for task in list(self.tasks.tasks.values()):
            if task.state is not TaskState.RUNNING:
                continue
            for name, timers in self.timers.items():
                store = task.stores.get(name)
                if not isinstance(store, TimerStore) or not timers.wall_due(store, now):
                    continue
                self.owner.begin()
                self.ctx.bind(task.index, task.stores)
                fired += timers.fire_wall_clock(self.ctx, now)
                self._produce(now)
        return fired

    def _produce(self, now: int) -> None:
        """The timers' sends into the open transaction; a refusal aborts it."""
        pending = self.ctx.pending
        produced = self.owner.tally.produced
        try:
            for topic, value, key, partition, ts, headers in pending:
                self.collector.produce(
                    topic, value, key, partition, now if ts is None else ts, headers
                )
                produced[topic] += 1
        except KafkaException as exc:
            err = exc.args[0]
            self.owner.note_failure(err)
            raise RecordFailed(err.name(), f"a wall-clock timer's output: {err.str()}") from exc
        finally:
            pending.clear()
