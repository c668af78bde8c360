"""The stores of the partitions this worker owns: open, restore, changelog, commit, close.

A store instance belongs to one input partition (all topics that use a store must have the
same partition count; partition p of each is served by instance p). Restores run in the
worker loop, not in rebalance callbacks: assigned partitions whose stores are behind their
changelog are paused in the main consumer until a dedicated restore consumer (assign, not
subscribe; read_committed) has brought them to the changelog's end, batch by batch.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import groupby

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from eokafka.config import Settings
from eokafka.errors import TopologyError
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.topics import TopicGuard
from eokafka.state import Store, StoreCorruptError, changelog_topic, open_store, store_dir
from eokafka.topology import Topology

log = logging.getLogger("eokafka.stores")
_RPC_TIMEOUT = 30.0
_RESTORE_BATCH = 10_000
_SIZES_EVERY = 5.0  # seconds between store-size gauge refreshes
StoreKey = tuple[str, int]  # (store name, partition)
Produce = Callable[..., None]


@dataclass
class _Restore:
    store: Store
    position: int  # the next changelog offset to apply
    end: int
    started: float = field(default_factory=time.monotonic)
    restored: int = 0


class StoreTasks:
    def __init__(
        self, settings: Settings, topology: Topology, metrics: WorkerMetrics, topics: TopicGuard
    ) -> None:
        self.settings = settings
        self.specs = topology.stores
        self.metrics = metrics
        self.topics = topics
        self.by_topic = topology.store_names_by_topic()
        self.changelogs = {n: changelog_topic(settings.application_id, n) for n in self.specs}
        self.stores: dict[StoreKey, Store] = {}
        self.restoring: dict[StoreKey, _Restore] = {}
        self._restore_assigned: set[StoreKey] = set()  # what the restore consumer reads now
        self.waiting: dict[int, list[TopicPartition]] = {}  # partition -> paused inputs
        self.checkpoints: dict[StoreKey, int] = {}  # changelog offsets seen this commit
        self._restore_consumer: Consumer | None = None
        self._progress = sys.stderr.isatty()
        self._sizes_due = 0.0

    # -- start-up ------------------------------------------------------------------------

    def ensure_changelogs(self) -> None:
        """Create each changelog (compacted, as many partitions as its sources) or check it."""
        for name, topic in self.changelogs.items():
            counts = {
                src: self.topics.partitions(src)
                for src, names in self.by_topic.items()
                if name in names
            }
            if len(set(counts.values())) > 1:
                raise TopologyError(
                    f"store {name!r} is used by topics with different partition counts {counts}; "
                    "co-partition them (same partition count) first"
                )
            wanted = next(iter(counts.values()), None) or 1
            have = self.topics.partitions(topic)
            if have is None:
                config = self.specs[name].changelog_config()
                self.topics.ensure(topic, "changelog", wanted, internal=True, config=config)
            elif have != wanted:
                raise TopologyError(
                    f"changelog topic {topic!r} has {have} partitions but its source topics "
                    f"have {wanted}; delete it (the state is rebuilt from the inputs only if "
                    "you reprocess them) or repartition the sources"
                )

    def _consumer(self) -> Consumer:
        if self._restore_consumer is None:
            self._restore_consumer = Consumer(
                {
                    "bootstrap.servers": self.settings.bootstrap_servers,
                    "group.id": f"{self.settings.application_id}-restore",  # never joins
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "enable.partition.eof": True,
                    "fetch.max.bytes": 64 * 1024 * 1024,
                    # Keep fetching while a batch is applied: librdkafka otherwise backs
                    # off a full second once its local queue holds queued.min.messages.
                    # The prefetch is bounded by size instead (benchmarks/restore.py).
                    "queued.min.messages": 1_000_000,
                    "queued.max.messages.kbytes": 16_384,
                    "fetch.queue.backoff.ms": 10,
                    "auto.offset.reset": "earliest",
                }
            )
        return self._restore_consumer

    # -- assignment ----------------------------------------------------------------------

    def open_partitions(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """Open the stores of newly assigned inputs; return the inputs to pause for restore."""
        to_pause: list[TopicPartition] = []
        for tp in partitions:
            names = self.by_topic.get(tp.topic, ())
            for name in names:
                key = (name, tp.partition)
                if key not in self.stores:
                    self.stores[key] = self._open(name, tp.partition)
                    self._start_restore(key)
            if any((n, tp.partition) in self.restoring for n in names):
                self.waiting.setdefault(tp.partition, []).append(
                    TopicPartition(tp.topic, tp.partition)
                )
                to_pause.append(TopicPartition(tp.topic, tp.partition))
        self._assign_restores()
        return to_pause

    def _open(self, name: str, partition: int) -> Store:
        spec = self.specs[name]
        state_dir, app_id = self.settings.state_dir, self.settings.application_id
        try:
            return open_store(spec, state_dir, app_id, partition)
        except StoreCorruptError as exc:
            log.warning("%s; wiping it to restore in full from the changelog", exc)
            shutil.rmtree(store_dir(state_dir, app_id, name, partition), ignore_errors=True)
            return open_store(spec, state_dir, app_id, partition)

    def _start_restore(self, key: StoreKey) -> None:
        store = self.stores[key]
        tp = TopicPartition(self.changelogs[key[0]], key[1])
        low, end = self._consumer().get_watermark_offsets(tp, timeout=_RPC_TIMEOUT)
        start = max(store.checkpoint or 0, low)
        if start >= end:
            log.info("store %s[%d] is up to date at changelog offset %d", *key, end)
            return
        self.restoring[key] = _Restore(store, start, end)
        self.metrics.restore_remaining.labels(*_labels(key)).set(end - start)
        log.info("restoring store %s[%d]: changelog offsets %d..%d", *key, start, end)

    def _assign_restores(self) -> None:
        """Add and remove restore partitions incrementally: the others keep their position
        and their prefetched records."""
        wanted = set(self.restoring)
        gone = self._restore_assigned - wanted
        new = wanted - self._restore_assigned
        if not gone and not new:
            return
        consumer = self._consumer()
        if gone:
            consumer.incremental_unassign(
                [TopicPartition(self.changelogs[name], p) for name, p in gone]
            )
        if new:
            consumer.incremental_assign(
                [
                    TopicPartition(self.changelogs[name], p, self.restoring[(name, p)].position)
                    for name, p in new
                ]
            )
        self._restore_assigned = wanted

    def close_partitions(self, partitions: list[TopicPartition]) -> None:
        """Close the stores of partitions that left (after the commit or abort).

        Store instances are per partition index; under the eager protocol the co-partitioned
        inputs of one index leave together.
        """
        gone = {tp.partition for tp in partitions}
        for key in [k for k in self.stores if k[1] in gone]:
            self.restoring.pop(key, None)
            self.checkpoints.pop(key, None)
            self.stores.pop(key).close()
            for gauge in (self.metrics.store_keys, self.metrics.restore_remaining):
                try:
                    gauge.remove(*_labels(key))
                except KeyError:
                    pass
        for p in gone:
            self.waiting.pop(p, None)
        self._assign_restores()

    # -- restore in the loop -------------------------------------------------------------

    def restore_step(self) -> list[TopicPartition]:
        """Apply one batch of changelog records; return inputs whose stores are now ready.

        Records are grouped by runs of topic and partition and handed to the store through
        C-level map/zip: a restore is per-record work on a million records, so no Python
        statement runs per record. Stores merge batches in memory (flush=False) and write
        once at the end of the restore, or when their buffer is full.
        """
        if not self.restoring:
            return []
        msgs = self._consumer().consume(_RESTORE_BATCH, 0.2)
        names = {topic: name for name, topic in self.changelogs.items()}
        batches: dict[StoreKey, list[Message]] = {}
        ended: dict[StoreKey, int] = {}  # partition EOF: the read_committed end was reached
        for topic, run in groupby(msgs, Message.topic):
            name = names[topic]
            for partition, group in groupby(run, Message.partition):
                key = (name, partition)
                if key not in self.restoring:
                    continue
                part = list(group)
                if any(map(Message.error, part)):
                    part = _without_eof(part, key, ended)
                batches.setdefault(key, []).extend(part)
        done: list[StoreKey] = []
        for key in batches.keys() | ended.keys():
            restore = self.restoring[key]
            part = batches.get(key, [])
            offset = part[-1].offset() + 1 if part else restore.position
            offset = max(offset, ended.get(key, offset))
            finished = key in ended or offset >= restore.end
            records = zip(map(Message.key, part), map(Message.value, part), strict=True)
            restore.store.restore_batch(records, offset, flush=finished)
            restore.position = offset
            restore.restored += len(part)
            self.metrics.restored.labels(*_labels(key)).inc(len(part))
            self.metrics.restore_remaining.labels(*_labels(key)).set(max(0, restore.end - offset))
            if finished:
                done.append(key)
        if self._progress and batches:
            left = sum(max(0, r.end - r.position) for r in self.restoring.values())
            print(f"\rrestoring stores: {left:,} changelog records left ", end="", file=sys.stderr)
        for key in done:
            self._finish(key)
        if done:
            self._assign_restores()
        return self._ready_inputs()

    def _finish(self, key: StoreKey) -> None:
        restore = self.restoring.pop(key)
        took = time.monotonic() - restore.started
        self.metrics.restore_duration.labels(*_labels(key)).set(took)
        self.metrics.restore_remaining.labels(*_labels(key)).set(0)
        self._sizes_due = 0.0  # len() may scan a persistent store: refresh at the next commit
        rate = restore.restored / took if took > 0 else float(restore.restored)
        log.info(
            "restored store %s[%d]: %d records in %.2fs (%.0f records/s)",
            *key, restore.restored, took, rate,
        )  # fmt: skip
        if self._progress and not self.restoring:
            print("\rrestoring stores: done" + " " * 30, file=sys.stderr)

    def _ready_inputs(self) -> list[TopicPartition]:
        ready: list[TopicPartition] = []
        for p in list(self.waiting):
            if not any(k[1] == p for k in self.restoring):
                ready.extend(self.waiting.pop(p))
        return ready

    # -- the transaction -----------------------------------------------------------------

    def produce_changelogs(self, produce: Produce) -> int:
        """Send each store's last write per key into the open transaction."""
        sent = 0
        for key, store in self.stores.items():
            if key in self.restoring:
                continue
            pending = store.pending_changelog()
            if not pending:
                continue
            topic, partition = self.changelogs[key[0]], key[1]
            items = list(pending.items())
            for k, v in items[:-1]:
                produce(topic, v, k, partition)
            k, v = items[-1]
            produce(topic, v, k, partition, on_delivery=self._delivered(key))
            sent += len(items)
        return sent

    def _delivered(self, key: StoreKey) -> Callable[[KafkaError | None, object], None]:
        def record(err: KafkaError | None, msg: object) -> None:
            if err is None:
                self.checkpoints[key] = msg.offset() + 1  # type: ignore[attr-defined]

        return record

    def committed(self) -> None:
        """Kafka committed: apply each overlay with the changelog offset it now reflects."""
        for key, store in self.stores.items():
            if key not in self.restoring and store.pending_changelog():
                store.commit(self.checkpoints.pop(key, None))
        self.checkpoints.clear()
        now = time.monotonic()
        if now >= self._sizes_due:  # len() may count on disk: refresh sizes now and then
            self._sizes_due = now + _SIZES_EVERY
            for key, store in self.stores.items():
                if key not in self.restoring:
                    self.metrics.store_keys.labels(*_labels(key)).set(len(store))

    def aborted(self) -> None:
        for store in self.stores.values():
            store.abort()
        self.checkpoints.clear()

    def resync(self, inputs: list[TopicPartition]) -> list[TopicPartition]:
        """After a producer reset: bring every open store to its changelog's committed end.

        The last transaction may have committed or not, so no overlay survives, and each store
        that is not restoring already restarts a restore from its own checkpoint (committed
        state only ever sits at or behind Kafka, invariant 5): the changelog's tail decides.
        Returns the ``inputs`` to pause until their stores have caught up.
        """
        self.aborted()
        for key in self.stores:
            if key not in self.restoring:
                self._start_restore(key)
        self._assign_restores()
        to_pause: list[TopicPartition] = []
        for tp in inputs:
            names = self.by_topic.get(tp.topic, ())
            if not any((n, tp.partition) in self.restoring for n in names):
                continue
            waiting = self.waiting.setdefault(tp.partition, [])
            if all((w.topic, w.partition) != (tp.topic, tp.partition) for w in waiting):
                waiting.append(TopicPartition(tp.topic, tp.partition))
            to_pause.append(TopicPartition(tp.topic, tp.partition))
        return to_pause

    def store(self, name: str, partition: int) -> Store:
        try:
            return self.stores[(name, partition)]
        except KeyError:
            raise TopologyError(
                f"store {name!r} is not available on partition {partition}: declare it on "
                "the processor (@app.processor(..., stores=[...]))"
            ) from None

    def close(self) -> None:
        for store in self.stores.values():
            store.close()
        self.stores.clear()
        if self._restore_consumer is not None:
            self._restore_consumer.close()


def _without_eof(part: list[Message], key: StoreKey, ended: dict[StoreKey, int]) -> list[Message]:
    """The records of a run, noting a partition EOF; any other error is raised."""
    records: list[Message] = []
    for msg in part:
        err = msg.error()
        if err is None:
            records.append(msg)
        elif err.code() == KafkaError._PARTITION_EOF:
            ended[key] = msg.offset()
        else:
            raise KafkaException(err)
    return records


def _labels(key: StoreKey) -> tuple[str, str]:
    return key[0], str(key[1])
