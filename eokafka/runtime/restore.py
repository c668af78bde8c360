"""The restore reader: one assign-only, read_committed consumer bringing stores forward.

Restores run in the worker loop, never in rebalance callbacks: the stores of a task that is
restoring are fed here batch by batch, from where StoreTasks decided (see stores.py for the
checkpoint rules), until the read_committed position reaches the high watermark seen at the
start of the restore. The consumer never moves to another offset by itself
(``auto.offset.reset=error``): a position that falls out of the changelog is handed back to
StoreTasks, which wipes the store and restarts the restore in full.
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

from eokafka.config import Settings, restore_consumer_config
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.clients import Clients
from eokafka.state import Store

log = logging.getLogger("eokafka.stores")
_RESTORE_BATCH = 10_000
# consume() waits this long even when records are ready: the floor of a small restore.
_RESTORE_WAIT = 0.01
StoreKey = tuple[str, int]  # (store name, partition)
# The restore position left the changelog (records deleted under it): restore in full.
_OUT_OF_RANGE = frozenset({KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE})


@dataclass
class Restore:
    store: Store
    position: int  # the next changelog offset to apply
    end: int  # the high watermark at the start: done once read_committed reached it
    floor: int = 0  # the checkpoint at the start, which a restore never moves back
    counted_from: int = 0  # records below were applied before (re-read, not counted)
    started: float = field(default_factory=time.monotonic)
    restored: int = 0
    full: bool = False  # from the beginning of the changelog, into an empty store

    @property
    def offset(self) -> int:
        """Where the restore consumer starts: an absolute offset (a full restore's is the low
        watermark), since a logical one waits out librdkafka's 500 ms offset-query backoff
        on a partition whose leader it does not know yet; an offset deleted meanwhile is
        out of range, and the restore starts over in full."""
        return self.position


class RestoreReader:
    def __init__(
        self,
        settings: Settings,
        changelogs: dict[str, str],
        metrics: WorkerMetrics,
        clients: Clients,
    ) -> None:
        self.settings = settings
        self.changelogs = changelogs
        self.metrics = metrics
        self._clients = clients
        self.restoring: dict[StoreKey, Restore] = {}
        self._assigned: set[StoreKey] = set()  # what the restore consumer reads now
        self._consumer: Consumer | None = None
        self._progress = sys.stderr.isatty()

    def consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = self._clients.restore_consumer(restore_consumer_config(self.settings))
        return self._consumer

    def start(self, key: StoreKey, restore: Restore) -> None:
        self.cancel(key)
        self.restoring[key] = restore
        self.metrics.restore_remaining.labels(*labels(key)).set(restore.end - restore.position)

    def cancel(self, key: StoreKey) -> None:
        """Forget a running restore of ``key``, so that a new one is assigned afresh."""
        self.restoring.pop(key, None)
        if key in self._assigned:
            tp = TopicPartition(self.changelogs[key[0]], key[1])
            self.consumer().incremental_unassign([tp])
            self._assigned.discard(key)

    def suspend(self, key: StoreKey) -> None:
        """Stop a restore half-way, writing what it merged: the store stays open at the
        offset it read up to, and a later restore resumes from there."""
        restore = self.restoring.get(key)
        if restore is None:
            return
        if restore.store.restoring:
            restore.store.restore_batch((), max(restore.position, restore.floor), flush=True)
        self.cancel(key)

    def assign(self) -> None:
        """Add and remove restore partitions incrementally: the others keep their position
        and their prefetched records. With nothing to restore the consumer is closed: it
        would keep connections, and queue librdkafka's log lines, that nothing reads."""
        wanted = set(self.restoring)
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
            consumer.incremental_unassign(
                [TopicPartition(self.changelogs[name], p) for name, p in gone]
            )
        if new:
            consumer.incremental_assign(
                [
                    TopicPartition(self.changelogs[name], p, self.restoring[(name, p)].offset)
                    for name, p in new
                ]
            )
        self._assigned = wanted

    def step(self, restart: Callable[[StoreKey, str], None]) -> list[StoreKey]:
        """Apply one batch of changelog records; return the stores whose restore finished.

        Records are grouped by runs of topic and partition and handed to the store through
        C-level map/zip: a restore is per-record work on a million records, so no Python
        statement runs per record. Stores merge batches in memory (flush=False) and write
        once at the end of the restore, or when their buffer is full. A position out of
        range goes to ``restart`` (wipe, restore in full).
        """
        if not self.restoring:
            return []
        msgs = self.consumer().consume(_RESTORE_BATCH, _RESTORE_WAIT)
        names = {topic: name for name, topic in self.changelogs.items()}
        batches: dict[StoreKey, list[Message]] = {}
        ended: dict[StoreKey, int] = {}  # partition EOF: the read_committed end was reached
        lost: dict[StoreKey, str] = {}  # the position fell out of the changelog
        for topic, run in groupby(msgs, Message.topic):
            name = names[topic]
            for partition, group in groupby(run, Message.partition):
                key = (name, partition)
                if key not in self.restoring:
                    continue
                part = list(group)
                if any(map(Message.error, part)):
                    part = _without_eof(part, key, ended, lost)
                batches.setdefault(key, []).extend(part)
        for key, why in lost.items():
            batches.pop(key, None)
            ended.pop(key, None)
            self.cancel(key)
            restart(key, why)
        done: list[StoreKey] = []
        for key in batches.keys() | ended.keys():
            restore = self.restoring[key]
            part = batches.get(key, [])
            read_to = part[-1].offset() + 1 if part else restore.position
            read_to = max(read_to, ended.get(key, read_to))
            finished = read_to >= restore.end
            offset = max(read_to, restore.floor)  # a checkpoint never moves back
            records = zip(map(Message.key, part), map(Message.value, part), strict=True)
            restore.store.restore_batch(records, offset, flush=finished)
            restore.position = read_to
            counted = len(part)
            if part and part[0].offset() < restore.counted_from:
                counted = sum(1 for m in part if m.offset() >= restore.counted_from)
            restore.restored += counted
            self.metrics.restored.labels(*labels(key)).inc(counted)
            self.metrics.restore_remaining.labels(*labels(key)).set(max(0, restore.end - offset))
            if finished:
                done.append(key)
        if self._progress and batches:
            left = sum(max(0, r.end - r.position) for r in self.restoring.values())
            print(f"\rrestoring stores: {left:,} changelog records left ", end="", file=sys.stderr)
        for key in done:
            self._finish(key)
        if done or lost:
            self.assign()
        return done

    def _finish(self, key: StoreKey) -> None:
        restore = self.restoring.pop(key)
        took = time.monotonic() - restore.started
        self.metrics.restore_duration.labels(*labels(key)).set(took)
        self.metrics.restore_remaining.labels(*labels(key)).set(0)
        rate = restore.restored / took if took > 0 else float(restore.restored)
        log.info(
            "restored store %s[%d]: %d records in %.2fs (%.0f records/s)",
            *key, restore.restored, took, rate,
        )  # fmt: skip
        if self._progress and not self.restoring:
            print("\rrestoring stores: done" + " " * 30, file=sys.stderr)

    def close(self) -> None:
        self.restoring.clear()
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        self._assigned = set()


def _without_eof(
    part: list[Message], key: StoreKey, ended: dict[StoreKey, int], lost: dict[StoreKey, str]
) -> list[Message]:
    """The records of a run, noting a partition EOF or a position out of range; any other
    error is raised."""
    records: list[Message] = []
    for msg in part:
        err = msg.error()
        if err is None:
            records.append(msg)
        elif err.code() == KafkaError._PARTITION_EOF:
            ended[key] = msg.offset()
        elif err.code() in _OUT_OF_RANGE:
            lost[key] = (
                f"the restore position {msg.offset()} of changelog {msg.topic()}"
                f"[{msg.partition()}] is out of range ({err.str()})"
            )
            return []
        else:
            raise KafkaException(err)
    return records


def labels(key: StoreKey) -> tuple[str, str]:
    return key[0], str(key[1])
