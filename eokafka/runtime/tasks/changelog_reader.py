"""The changelog reader: one assign-only, read_committed consumer bringing stores forward.

One class for both jobs that read changelogs: restoring an active task's stores up to the
changelog's end (``Restore`` with an ``end``), and tailing a standby replica's stores for as
long as it is kept (``end`` None). It runs in the worker loop, never in rebalance callbacks,
one batch per step. The consumer never moves to another offset by itself
(``auto.offset.reset=error``): a position that falls out of the changelog is handed back as
*lost*, and its owner wipes the store and starts over (see store_loader.py).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import groupby

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from eokafka.metrics import WorkerMetrics
from eokafka.state import Store

log = logging.getLogger("eokafka.stores")
_BATCH = 10_000
TP = tuple[str, int]
# The position left the changelog (records deleted under it): start over.
_OUT_OF_RANGE = frozenset({KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE})


@dataclass(eq=False)
class Restore:
    """One store instance fed from its changelog partition."""

    name: str  # the store's name
    partition: int
    store: Store
    position: int  # the next changelog offset to apply
    end: int | None  # the high watermark at the start: done once reached; None: a tail
    floor: int = 0  # the checkpoint at the start, which a restore never moves back
    counted_from: int = 0  # records below were applied before (re-read, not counted)
    started: float = field(default_factory=time.monotonic)
    restored: int = 0
    full: bool = False  # from the beginning of the changelog, into an empty store

    @property
    def offset(self) -> int:
        """Where the consumer starts: an absolute offset (a full restore's is the low
        watermark), since a logical one waits out librdkafka's 500 ms offset-query backoff
        on a partition whose leader it does not know yet; an offset deleted meanwhile is
        out of range, and the restore starts over in full."""
        return self.position

    @property
    def labels(self) -> tuple[str, str]:
        return self.name, str(self.partition)


class ChangelogReader:
    def __init__(
        self,
        make_consumer: Callable[[], Consumer],
        changelogs: dict[str, str],
        metrics: WorkerMetrics,
        restoring: bool,
    ) -> None:
        """``restoring``: an active side's restores (counted in the restore metrics, an
        unknown consumer error raised) rather than standby tails (logged, not counted)."""
        self._make_consumer = make_consumer
        self.changelogs = changelogs
        self._stores = {topic: name for name, topic in changelogs.items()}
        self.metrics = metrics
        self.restoring = restoring
        self.targets: dict[TP, Restore] = {}  # by changelog topic and partition
        self._assigned: set[TP] = set()  # what the consumer reads now
        self._consumer: Consumer | None = None
        self._progress = restoring and sys.stderr.isatty()

    def tp(self, restore: Restore) -> TP:
        return self.changelogs[restore.name], restore.partition

    def consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = self._make_consumer()
        return self._consumer

    def start(self, restore: Restore) -> None:
        """Read ``restore``'s changelog partition from its position (replacing any other)."""
        self.cancel(restore)
        self.targets[self.tp(restore)] = restore
        if self.restoring and restore.end is not None:
            self.metrics.restore_remaining.labels(*restore.labels).set(
                restore.end - restore.position
            )

    def cancel(self, restore: Restore) -> None:
        """Stop reading ``restore``'s changelog partition (a new target is assigned afresh)."""
        tp = self.tp(restore)
        self.targets.pop(tp, None)
        if tp in self._assigned:
            self.consumer().incremental_unassign([TopicPartition(*tp)])
            self._assigned.discard(tp)

    def suspend(self, restore: Restore) -> None:
        """Stop a restore half-way, writing what it merged: the store stays open at the
        offset it read up to, and a later restore resumes from there."""
        if restore.store.restoring:
            restore.store.restore_batch((), max(restore.position, restore.floor), flush=True)
        self.cancel(restore)

    def assign(self) -> None:
        """Add and remove partitions incrementally: the others keep their position and their
        prefetched records. With nothing to read the consumer is closed: it would keep
        connections, and queue librdkafka's log lines, that nothing reads."""
        wanted = set(self.targets)
        if not wanted and self._consumer is not None:
            self._consumer.close()
            self._consumer = None
            self._assigned = set()
            return
        gone = self._assigned - wanted
        new = wanted - self._assigned
        if not gone and not new:
            return
        consumer = self.consumer()
        if gone:
            consumer.incremental_unassign([TopicPartition(*tp) for tp in gone])
        if new:
            consumer.incremental_assign(
                [TopicPartition(t, p, self.targets[(t, p)].offset) for t, p in new]
            )
        self._assigned = wanted

    def step(self, timeout: float) -> tuple[list[Restore], list[tuple[Restore, str]]]:
        """Apply one batch; return the restores that reached their end, and those whose
        position left the changelog (with why), which are no longer read.

        Records are grouped by runs of topic and partition and handed to the store through
        C-level map/zip: a restore is per-record work on a million records, so no Python
        statement runs per record. A restore's store merges batches in memory and writes
        once at its end (or when its buffer is full); a tail writes every batch.
        """
        if not self.targets:
            return [], []
        msgs = self.consumer().consume(_BATCH, timeout)
        batches: dict[TP, list[Message]] = {}
        ended: dict[TP, int] = {}  # partition EOF: the read_committed end was reached
        lost: dict[TP, str] = {}
        for topic, run in groupby(msgs, Message.topic):
            for partition, group in groupby(run, Message.partition):
                tp = (topic, partition)
                if tp not in self.targets:
                    continue
                part = list(group)
                if any(map(Message.error, part)):
                    part = self._without_errors(part, tp, ended, lost)
                batches.setdefault(tp, []).extend(part)
        gone = []
        for tp, why in lost.items():
            batches.pop(tp, None)
            ended.pop(tp, None)
            restore = self.targets[tp]
            self.cancel(restore)
            gone.append((restore, why))
        done = [self.targets[tp] for tp in batches.keys() | ended.keys()
                if self._feed(tp, batches, ended)]  # fmt: skip
        if self._progress and batches:
            left = sum(max(0, (r.end or 0) - r.position) for r in self.targets.values())
            print(f"\rrestoring stores: {left:,} changelog records left ", end="", file=sys.stderr)
        for restore in done:
            self._finish(restore)
        if done or gone:
            self.assign()
        return done, gone

    def _feed(self, tp: TP, batches: dict[TP, list[Message]], ended: dict[TP, int]) -> bool:
        """Apply one partition's part of the batch; True when its restore reached its end."""
        restore = self.targets[tp]
        part = batches.get(tp, [])
        read_to = part[-1].offset() + 1 if part else restore.position
        read_to = max(read_to, ended.get(tp, read_to))
        if not part and read_to == restore.position and restore.store.checkpoint is not None:
            return False
        finished = restore.end is not None and read_to >= restore.end
        offset = max(read_to, restore.floor)  # a checkpoint never moves back
        records = zip(map(Message.key, part), map(Message.value, part), strict=True)
        restore.store.restore_batch(records, offset, flush=finished or restore.end is None)
        restore.position = read_to
        if self.restoring:
            counted = len(part)
            if part and part[0].offset() < restore.counted_from:
                counted = sum(1 for m in part if m.offset() >= restore.counted_from)
            restore.restored += counted
            self.metrics.restored.labels(*restore.labels).inc(counted)
            left = max(0, (restore.end or offset) - offset)
            self.metrics.restore_remaining.labels(*restore.labels).set(left)
        return finished

    def _without_errors(
        self, part: list[Message], tp: TP, ended: dict[TP, int], lost: dict[TP, str]
    ) -> list[Message]:
        """The records of a run, noting a partition EOF or a position out of range."""
        records: list[Message] = []
        for msg in part:
            err = msg.error()
            if err is None:
                records.append(msg)
            elif err.code() == KafkaError._PARTITION_EOF:
                ended[tp] = max(ended.get(tp, 0), msg.offset())
            elif err.code() in _OUT_OF_RANGE:
                lost[tp] = (
                    f"the position {msg.offset()} of changelog {msg.topic()}"
                    f"[{msg.partition()}] is out of range ({err.str()})"
                )
                return []
            elif self.restoring:
                raise KafkaException(err)
            else:
                log.warning("changelog %s[%d]: %s", *tp, err.str())
        return records

    def _finish(self, restore: Restore) -> None:
        del self.targets[self.tp(restore)]
        took = time.monotonic() - restore.started
        self.metrics.restore_duration.labels(*restore.labels).set(took)
        self.metrics.restore_remaining.labels(*restore.labels).set(0)
        rate = restore.restored / took if took > 0 else float(restore.restored)
        log.info(
            "restored store %s[%d]: %d records in %.2fs (%.0f records/s)",
            restore.name, restore.partition, restore.restored, took, rate,
        )  # fmt: skip
        if self._progress and not self.targets:
            print("\rrestoring stores: done" + " " * 30, file=sys.stderr)

    def close(self) -> None:
        self.targets.clear()
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        self._assigned = set()
