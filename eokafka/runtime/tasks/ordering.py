"""Event-time order across a task's input partitions: the worker's side of the record queues.

The records of a task with several input partitions go through its queue (record_queue.py)
instead of straight to processing; the queues release them in timestamp order. This is the
part that talks to the consumer for them: end-of-partition events mark an input at its end,
a full queue pauses its partition and a drained one resumes it, and an input the queue has
waited on for long is logged, since nothing is processed for that task meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from eokafka.runtime.tasks.record_queue import RecordQueue
from eokafka.runtime.tasks.task import Task, TaskState

log = logging.getLogger("eokafka.tasks")
TP = tuple[str, int]
LAGGING_WARN_S = 30.0  # an input not fetched for this long while its partner's records wait


class Ordering:
    def __init__(self, consumer: Consumer | None, clock: Callable[[], float], idle_ms: int):
        self.consumer = consumer
        self.clock = clock
        self.idle_ms = idle_ms
        self.queued: dict[Task, None] = {}  # tasks whose queues hold records, in arrival order
        self._warned: set[TP] = set()

    def queue(self) -> RecordQueue:
        return RecordQueue(self.idle_ms)

    def enqueue(self, task: Task, tp: TP, msgs: list[Message]) -> list[Message]:
        """Queue an input's run of a batch; returns its error events (end-of-partition
        events are taken here: the input is at its end)."""
        queue = task.queue
        assert queue is not None
        errors: list[Message] = []
        start = 0
        for i, msg in enumerate(msgs):
            err = msg.error()
            if err is None:
                continue
            if i > start:
                queue.add(tp, msgs[start:i])
            start = i + 1
            if err.code() == KafkaError._PARTITION_EOF:
                queue.end(tp)
            else:
                errors.append(msg)
        if start < len(msgs):
            queue.add(tp, msgs[start:] if start else msgs)
        if queue.queues.get(tp):
            self.queued[task] = None
        return errors

    def at_end(self, task: Task, tp: TP) -> None:
        if task.queue is not None:
            task.queue.end(tp)

    def release(self, limit: int | None = None) -> Iterator[tuple[Task, str, list[Message]]]:
        """The runs the running tasks' queues release now, in timestamp order per task; at
        most ``limit`` records in all."""
        now = self.clock()
        for task in list(self.queued):
            queue = task.queue
            if queue is None or task.state is not TaskState.RUNNING:
                continue
            if limit is not None and limit <= 0:
                return
            for tp, msgs in queue.release(task.inputs, task.held, now, limit):
                if limit is not None:
                    limit -= len(msgs)
                yield task, tp[0], msgs
            if not any(queue.queues.values()):
                del self.queued[task]
            self._flow(task, queue, now)

    def _flow(self, task: Task, queue: RecordQueue, now: float) -> None:
        """Pause the inputs whose queues are full, resume those drained; warn of a wait."""
        assert self.consumer is not None
        full = queue.full()
        if full:
            self.consumer.pause([TopicPartition(*tp) for tp in full])
        drained = [tp for tp in queue.drained() if tp not in task.held]
        if drained:
            self.consumer.resume([TopicPartition(*tp) for tp in drained])
        if queue.lagging is not None:
            tp, since = queue.lagging
            if now - since >= LAGGING_WARN_S and tp not in self._warned:
                self._warned.add(tp)
                log.warning(
                    "task %s: waiting %.0f s for the records of %s[%d] (fetched none yet, "
                    "not at its end); %d records of its other inputs wait to be processed "
                    "in timestamp order", task.name, now - since, tp[0], tp[1], len(queue),
                )  # fmt: skip
        elif self._warned:
            self._warned.difference_update(task.inputs)

    def wait_s(self) -> float | None:
        """How long the worker's poll may wait before a queue's idle wait runs out."""
        now = self.clock()
        waits = [w for t in self.queued if t.queue and (w := t.queue.wait_s(now)) is not None]
        return min(waits) if waits else None

    def forget(self, task: Task) -> None:
        self.queued.pop(task, None)
