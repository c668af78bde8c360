"""A task's fetched records, released in timestamp order across its input partitions.

A task with several input partitions (a join's co-partitioned sides) must see their records
in event-time order, not in the order the consumer fetched them: on a backlog one topic's
fetches can run minutes of event time ahead of the other's, and a windowed join would drop
the other side's records as late. As Kafka Streams' PartitionGroup, the queue holds each
partition's fetched records and releases those of the partition whose head record has the
lowest timestamp, for as long as they are no later than every other partition's head.

It releases nothing while an input partition is empty and not known to be at its end (an
end-of-partition event, or a bounded run's end): its records are on the broker, fetched
soon, and may be older (``max_task_idle_ms`` 0, the default). ``max_task_idle_ms`` > 0 also
waits that long for new records on a partition at its end; -1 turns the queue off.

Queued records are not processed, so the commit's offset for their partition is the first
queued record's (``first_offset``), and a rewind drops the queue: the records are read
again. A partition holding ``cap`` records is paused until it drains (``paused``), so a
partition far ahead in event time does not fill memory while the other catches up.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection

from confluent_kafka import Message

TP = tuple[str, int]
QUEUED_PER_PARTITION = 1_000  # Kafka Streams' buffered.records.per.partition


class RecordQueue:
    def __init__(self, idle_ms: int, cap: int = QUEUED_PER_PARTITION) -> None:
        self.idle_ms = idle_ms
        self.cap = cap
        self.queues: dict[TP, deque[Message]] = {}
        self.at_end: set[TP] = set()  # an end-of-partition event came after its last record
        self.paused: set[TP] = set()  # paused by the queue, full
        self.idle_since: dict[TP, float] = {}  # empty inputs at their end: since when
        self.lagging: tuple[TP, float] | None = None  # the input a release waits to fetch

    def __len__(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def add(self, tp: TP, msgs: list[Message]) -> None:
        q = self.queues.get(tp)
        if q is None:
            self.queues[tp] = q = deque()
        q.extend(msgs)
        self.at_end.discard(tp)
        self.idle_since.pop(tp, None)

    def end(self, tp: TP) -> None:
        """The consumer reached the end of ``tp``: nothing older is coming from it now."""
        self.at_end.add(tp)

    def first_offset(self, tp: TP) -> int | None:
        """The offset of the first record of ``tp`` not processed yet, if one is queued."""
        q = self.queues.get(tp)
        return q[0].offset() if q else None

    def release(
        self, inputs: Collection[TP], ended: Collection[TP], now: float, limit: int | None = None
    ) -> list[tuple[TP, list[Message]]]:
        """The runs that may be processed now, in timestamp order, at most ``limit`` records
        (an abort loop narrowing transactions down); ``ended``: inputs a bounded run stopped
        at (nothing more comes from them)."""
        queues = self.queues
        out: list[tuple[TP, list[Message]]] = []
        while limit is None or limit > 0:
            heads: list[tuple[int, TP]] = []
            for tp in inputs:
                q = queues.get(tp)
                if q:
                    heads.append((q[0].timestamp()[1], tp))
                elif tp not in ended and not self._may_skip(tp, now):
                    return out
            if not heads:
                return out
            self.lagging = None
            heads.sort()
            tp = heads[0][1]
            bound = heads[1][0] if len(heads) > 1 else None
            q = queues[tp]
            run = [q.popleft()]
            if bound is None and (limit is None or limit > len(q)):
                run.extend(q)
                q.clear()
            else:
                most = len(q) + 1 if limit is None else limit
                while q and len(run) < most and (bound is None or q[0].timestamp()[1] <= bound):
                    run.append(q.popleft())
            if limit is not None:
                limit -= len(run)
            out.append((tp, run))
        return out

    def _may_skip(self, tp: TP, now: float) -> bool:
        """Whether an empty input need not be waited for: it is at its end (and, with an
        idle wait, has been for that long)."""
        if tp not in self.at_end:
            if self.lagging is None or self.lagging[0] != tp:
                self.lagging = (tp, now)
            return False
        if self.idle_ms <= 0:
            return True
        since = self.idle_since.setdefault(tp, now)
        return (now - since) * 1000 >= self.idle_ms

    def wait_s(self, now: float) -> float | None:
        """How long until the first idle wait for an input at its end runs out (None: no
        such wait); the worker's poll waits no longer."""
        if self.idle_ms <= 0 or not self.idle_since or not any(self.queues.values()):
            return None
        return max(0.0, min(self.idle_since.values()) + self.idle_ms / 1000 - now)

    def full(self) -> list[TP]:
        """Partitions at the cap, not paused yet: pause them (they are now ``paused``)."""
        out = [tp for tp, q in self.queues.items() if len(q) >= self.cap and tp not in self.paused]
        self.paused.update(out)
        return out

    def drained(self) -> list[TP]:
        """Paused partitions below half the cap: resume them."""
        out = [tp for tp in self.paused if len(self.queues.get(tp, ())) < self.cap // 2]
        self.paused.difference_update(out)
        return out

    def clear(self) -> None:
        """Drop the queued records (the inputs are sought back to read them again)."""
        self.queues.clear()
        self.at_end.clear()
        self.idle_since.clear()
        self.lagging = None

    def drop(self, tp: TP) -> None:
        """An input left the task."""
        self.queues.pop(tp, None)
        self.at_end.discard(tp)
        self.paused.discard(tp)
        self.idle_since.pop(tp, None)
        if self.lagging is not None and self.lagging[0] == tp:
            self.lagging = None

    def unpause(self) -> list[TP]:
        """Every partition the queue paused (after a rewind: resume them)."""
        out = sorted(self.paused)
        self.paused.clear()
        return out
