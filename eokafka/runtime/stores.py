"""The stores of the partitions this worker owns: open, restore, changelog, commit, close.

A store instance belongs to one input partition (all topics that use a store must have the
same partition count; partition p of each is served by instance p). Restores run in the
worker loop, not in rebalance callbacks: assigned partitions whose stores are behind their
changelog are paused in the main consumer until a dedicated restore consumer (assign, not
subscribe; read_committed) has brought them to the changelog's end, batch by batch.

Checkpoints. A store's checkpoint ``c`` says: the store reflects every committed changelog
record below ``c - 1``; the record at ``c - 1`` is reflected too, or is no data of this store
(a transaction marker). A commit whose last changelog record is at ``L`` writes ``c = L + 2``:
the commit marker of that transaction will follow ``L``, usually right at ``L + 1``. A restore
writes the offset it read up to. A restore resumes at ``c - 1``: re-applying a record the
store already reflects changes nothing (the last write per key wins).

When is a store up to date without reading anything? Let ``low``, ``stable`` and ``high`` be
the changelog partition's low watermark, last stable offset and high watermark:

* ``max(c - 1, low) >= high``: there is nothing to read.
* ``c == high`` and ``stable == high``: the partition has one offset past ``L`` and no open
  transaction. The commit that wrote ``c`` had its marker written (its transaction is not
  open), after ``L`` and below ``high``: so the marker is that one offset, and nothing else
  is there. After a restore the offset ``c - 1`` is reflected. Either way nothing to apply.

Otherwise the restore reads from ``max(c - 1, low)``. This stays sound when commit markers
are written after ``commit_transaction`` returned (the transaction is open on the partition
until then: ``stable < high``, so the second case does not apply) and when a zombie's records
sit in the tail (they take offsets, so ``high`` is past ``c``, and read_committed skips them
once aborted). A restore ends when the read_committed position reaches the high watermark
seen at its start: every transaction that wrote to the changelog before then is resolved,
and what it committed is in the store.

Strict restore. The restore consumer never moves to another offset by itself
(``auto.offset.reset=error``). A checkpoint outside the changelog means the store's state is
not the changelog's: below ``low`` (records the store never saw were deleted: retention of a
``compact,delete`` window changelog, or DeleteRecords), more than one past ``high``, or a
changelog topic that was deleted and created again (its topic id, kept next to the store's
files, differs). The store is then wiped and restored in full, with a log line saying why; so
is a store whose restore position falls out of range while it restores.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from eokafka.config import Settings, restore_consumer_config
from eokafka.errors import ConfigError, TopologyError
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.clients import KAFKA, Clients
from eokafka.runtime.topics import PartitionState, TopicGuard
from eokafka.state import Store, StoreCorruptError, changelog_topic, open_store, store_dir
from eokafka.topology import Topology

if TYPE_CHECKING:
    from eokafka.runtime.standby import StandbyReplicas

log = logging.getLogger("eokafka.stores")
_RESTORE_BATCH = 10_000
_SIZES_EVERY = 5.0  # seconds between store-size gauge refreshes
StoreKey = tuple[str, int]  # (store name, partition)
Produce = Callable[..., None]
TOPIC_ID_FILE = "changelog-topic-id"  # beside a persistent store's files
# The restore position left the changelog (records deleted under it): restore in full.
_OUT_OF_RANGE = frozenset({KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE})


def checkpoint_after_commit(last_offset: int) -> int:
    """The checkpoint of a store whose last committed changelog record is at ``last_offset``:
    one more for the commit marker that follows it (see the module docstring)."""
    return last_offset + 2


@dataclass
class _Restore:
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
        """Where the restore consumer starts: a full restore from whatever is kept then."""
        return OFFSET_BEGINNING if self.full else self.position


class StoreTasks:
    def __init__(
        self,
        settings: Settings,
        topology: Topology,
        metrics: WorkerMetrics,
        topics: TopicGuard,
        clients: Clients = KAFKA,
        record_limit: Callable[[str], int] | None = None,
    ) -> None:
        self._clients = clients
        self.settings = settings
        # The most key + value bytes a record to a changelog topic can carry.
        self.record_limit = record_limit
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
        # Warm copies of stores this worker does not own (num_standby_replicas), set by the
        # worker: opening a store takes its standby, closing one hands it back.
        self.standby: StandbyReplicas | None = None

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
            else:
                self._check_changelog_config(name, topic)

    def _check_changelog_config(self, name: str, topic: str) -> None:
        """An existing changelog must keep the last record of every key: compacted, and if
        it also deletes by time, then only after a window store's windows are closed (a
        key-value store's: never)."""
        found = self.topics.configs(topic)
        policy = found.get("cleanup.policy", "")
        policies = {p.strip() for p in policy.split(",") if p.strip()}
        wanted = self.specs[name].changelog_config()["cleanup.policy"]
        window = self.specs[name].window_retention_ms
        if "compact" not in policies or not policies <= {"compact", "delete"}:
            raise ConfigError(
                f"changelog topic {topic!r} of store {name!r} has cleanup.policy={policy!r}, "
                f"expected {wanted!r}: without compaction the store would lose keys when old "
                "segments are deleted. Change it (kafka-configs --alter --entity-type topics "
                f"--entity-name {topic} --add-config cleanup.policy=[{wanted}]) or delete "
                "the topic"
            )
        if "delete" not in policies:
            return
        kept_ms = int(found.get("retention.ms", "-1"))
        if kept_ms >= 0 and (window is None or kept_ms < window):
            expected = "-1" if window is None else f"-1 or at least {window} (window plus grace)"
            raise ConfigError(
                f"changelog topic {topic!r} of store {name!r} has cleanup.policy={policy!r} "
                f"and retention.ms={kept_ms}, expected retention.ms={expected} (or "
                f"cleanup.policy={wanted!r}): records the store still needs would be deleted"
            )

    def _consumer(self) -> Consumer:
        if self._restore_consumer is None:
            self._restore_consumer = self._clients.restore_consumer(
                restore_consumer_config(self.settings)
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
        # A warm standby replica, if this worker has one: its restore reads only the tail.
        store = self.standby.take(name, partition) if self.standby is not None else None
        if store is None:
            try:
                store = open_store(spec, state_dir, app_id, partition)
            except StoreCorruptError as exc:
                log.warning("%s; wiping it to restore in full from the changelog", exc)
                shutil.rmtree(store_dir(state_dir, app_id, name, partition), ignore_errors=True)
                store = open_store(spec, state_dir, app_id, partition)
        if self.record_limit is not None:  # a write too large for its changelog fails at put
            store.max_record_bytes = self.record_limit(self.changelogs[name])
        return store

    def _wipe(self, key: StoreKey, why: str) -> Store:
        """Delete a store's local state and open it empty, to restore it in full."""
        log.warning("store %s[%d]: %s; wiping it to restore in full from the changelog", *key, why)
        self.stores[key].destroy()
        self.stores[key] = store = self._open(*key)
        return store

    def _start_restore(self, key: StoreKey) -> None:
        """Decide from the checkpoint and the changelog's offsets whether the store must read
        its changelog, from where, or be wiped first (see the module docstring)."""
        store = self.stores[key]
        topic = self.changelogs[key[0]]
        state = self.topics.partition_state(topic, key[1])
        why = self._invalid(key, store.checkpoint, state)
        if why is not None:
            store = self._wipe(key, why)
        self._keep_topic_id(key, state.topic_id)
        c = store.checkpoint
        start = state.low if c is None else max(c - 1, state.low)
        self._cancel_restore(key)
        if start >= state.high or (c == state.high and state.stable == state.high):
            log.info("store %s[%d] is up to date at changelog offset %d", *key, state.high)
            return
        self.restoring[key] = _Restore(
            store, start, state.high, floor=c or 0, counted_from=c or 0, full=c is None
        )
        self.metrics.restore_remaining.labels(*_labels(key)).set(state.high - start)
        log.info("restoring store %s[%d]: changelog offsets %d..%d", *key, start, state.high)

    def _invalid(self, key: StoreKey, c: int | None, state: PartitionState) -> str | None:
        """Why the local state can't be brought forward from its checkpoint, or None."""
        topic = self.changelogs[key[0]]
        kept = self._topic_id_file(key)
        if kept is not None and state.topic_id is not None and kept.exists():
            if kept.read_text().strip() != state.topic_id:
                return (
                    f"changelog {topic}[{key[1]}] was deleted and created again (topic id "
                    f"{state.topic_id}, the store was built from {kept.read_text().strip()})"
                )
        if c is None:
            return None
        if c < state.low:
            return (
                f"checkpoint {c} is below the low watermark {state.low} of changelog "
                f"{topic}[{key[1]}]: records the store never applied were deleted (retention "
                "or DeleteRecords)"
            )
        if c > state.high + 1:
            return (
                f"checkpoint {c} is past the end offset {state.high} of changelog "
                f"{topic}[{key[1]}]: the changelog was deleted and created again"
            )
        return None

    def _topic_id_file(self, key: StoreKey) -> Path | None:
        """Where a persistent store keeps the id of the changelog topic it was built from."""
        if self.specs[key[0]].backend == "memory":
            return None
        state_dir, app_id = self.settings.state_dir, self.settings.application_id
        return store_dir(state_dir, app_id, key[0], key[1]) / TOPIC_ID_FILE

    def _keep_topic_id(self, key: StoreKey, topic_id: str | None) -> None:
        path = self._topic_id_file(key)
        if path is None or topic_id is None:
            return
        if not path.exists() or path.read_text().strip() != topic_id:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(topic_id)
            tmp.replace(path)

    def _cancel_restore(self, key: StoreKey) -> None:
        """Forget a running restore of ``key``, so that a new one is assigned afresh."""
        self.restoring.pop(key, None)
        if key in self._restore_assigned:
            tp = TopicPartition(self.changelogs[key[0]], key[1])
            self._consumer().incremental_unassign([tp])
            self._restore_assigned.discard(key)

    def _assign_restores(self) -> None:
        """Add and remove restore partitions incrementally: the others keep their position
        and their prefetched records. With nothing to restore the consumer is closed: it
        would keep connections, and queue librdkafka's log lines, that nothing reads."""
        wanted = set(self.restoring)
        if not wanted and self._restore_consumer is not None:
            self._restore_consumer.close()
            self._restore_consumer = None
            self._restore_assigned = set()
            return
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
                    TopicPartition(self.changelogs[name], p, self.restoring[(name, p)].offset)
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
            store = self.stores.pop(key)
            if self.standby is None or not self.standby.release(*key, store):
                store.close()  # else kept warm as a standby replica
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
            self._restart_in_full(key, why)
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
            self.metrics.restored.labels(*_labels(key)).inc(counted)
            self.metrics.restore_remaining.labels(*_labels(key)).set(max(0, restore.end - offset))
            if finished:
                done.append(key)
        if self._progress and batches:
            left = sum(max(0, r.end - r.position) for r in self.restoring.values())
            print(f"\rrestoring stores: {left:,} changelog records left ", end="", file=sys.stderr)
        for key in done:
            self._finish(key)
        if done or lost:
            self._assign_restores()
        return self._ready_inputs()

    def _restart_in_full(self, key: StoreKey, why: str) -> None:
        """The restore position left the changelog (records deleted under it): start over."""
        self._cancel_restore(key)
        store = self._wipe(key, why)
        topic = self.changelogs[key[0]]
        state = self.topics.partition_state(topic, key[1])
        self._keep_topic_id(key, state.topic_id)
        self.restoring[key] = _Restore(store, state.low, state.high, full=True)
        log.info(
            "restoring store %s[%d] in full: changelog offsets %d..%d", *key, state.low, state.high
        )

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
                self.checkpoints[key] = checkpoint_after_commit(msg.offset())  # type: ignore[attr-defined]

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


def _labels(key: StoreKey) -> tuple[str, str]:
    return key[0], str(key[1])
