"""The stores of this worker's tasks: open, decide the restore, changelog, commit, close.

A store instance belongs to one partition index (all topics that use a store must have the
same partition count; partition p of each is served by instance p), and to the task of that
index (task.py). A task that is suspended keeps its stores open; when it comes back, the
checkpoint decides whether anything must be read. The reading itself is restore.py's, in the
worker loop: the task's inputs stay paused until its stores have caught up.

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
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError

from eokafka.config import Settings
from eokafka.errors import ConfigError, TopologyError
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.clients import KAFKA, Clients
from eokafka.runtime.restore import Restore, RestoreReader
from eokafka.runtime.restore import labels as _labels
from eokafka.runtime.topics import PartitionState, TopicGuard
from eokafka.state import Store, StoreCorruptError, changelog_topic, open_store, store_dir
from eokafka.topology import Topology

log = logging.getLogger("eokafka.stores")
_SIZES_EVERY = 5.0  # seconds between store-size gauge refreshes
StoreKey = tuple[str, int]  # (store name, partition)
Produce = Callable[..., None]
TOPIC_ID_FILE = "changelog-topic-id"  # beside a persistent store's files


def checkpoint_after_commit(last_offset: int) -> int:
    """The checkpoint of a store whose last committed changelog record is at ``last_offset``:
    one more for the commit marker that follows it (see the module docstring)."""
    return last_offset + 2


class StoreTasks:
    def __init__(
        self,
        settings: Settings,
        topology: Topology,
        metrics: WorkerMetrics,
        topics: TopicGuard,
        clients: Clients = KAFKA,
        record_limit: Callable[[str], int] | None = None,
        standby: Any = None,
    ) -> None:
        """``standby``: warm store copies with ``take(name, partition) -> Store | None`` and
        ``release(name, partition, store) -> bool`` (False: close it), asked where a store
        is opened or closed for good."""
        self.standby = standby
        self.settings = settings
        # The most key + value bytes a record to a changelog topic can carry.
        self.record_limit = record_limit
        self.specs = topology.stores
        self.metrics = metrics
        self.topics = topics
        self.by_topic = topology.store_names_by_topic()
        self.changelogs = {n: changelog_topic(settings.application_id, n) for n in self.specs}
        self.stores: dict[StoreKey, Store] = {}
        self.reader = RestoreReader(settings, self.changelogs, metrics, clients)
        self.checkpoints: dict[StoreKey, int] = {}  # changelog offsets seen this commit
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

    # -- a task's stores -----------------------------------------------------------------

    def open(self, keys: Iterable[StoreKey], only_open: bool = False) -> list[StoreKey]:
        """Open (or keep) the stores of a task and decide their restore; return those that
        restore. A store that is already open, that of a task coming back, reads only the
        changelog tail past its checkpoint, or nothing when it is up to date. With
        ``only_open`` stores that are not open are left alone (a re-sync)."""
        keys = list(keys)
        for key in keys:
            if key not in self.stores:
                if only_open:
                    continue
                self.stores[key] = self._open_store(key)
            if key not in self.reader.restoring:
                self._start_restore(key)
        self.reader.assign()
        return [key for key in keys if key in self.reader.restoring]

    def suspend(self, keys: Iterable[StoreKey]) -> None:
        """A task left, maybe for a moment: its stores stay open with their committed
        state; a restore under way stops where it got to."""
        for key in keys:
            self.reader.suspend(key)
            self.checkpoints.pop(key, None)
        self.reader.assign()

    def close_stores(self, keys: Iterable[StoreKey]) -> None:
        """Close a task's stores for good (it was not given back, or the worker stops)."""
        for key in keys:
            self.reader.cancel(key)
            self.checkpoints.pop(key, None)
            self._close_store(key)
        self.reader.assign()

    def _open_store(self, key: StoreKey) -> Store:
        """Where a store of this worker comes from: the standby replicas, or its files."""
        if self.standby is not None:
            warm = self.standby.take(*key)
            if warm is not None:
                return warm
        return self._open(*key)

    def _close_store(self, key: StoreKey) -> None:
        """Where a store leaves this worker: back to the standby replicas, or closed."""
        store = self.stores.pop(key, None)
        if store is None:
            return
        for gauge in (self.metrics.store_keys, self.metrics.restore_remaining):
            try:
                gauge.remove(*_labels(key))
            except KeyError:
                pass
        if self.standby is None or not self.standby.release(key[0], key[1], store):
            store.close()

    def _open(self, name: str, partition: int) -> Store:
        spec = self.specs[name]
        state_dir, app_id = self.settings.state_dir, self.settings.application_id
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
        self.reader.cancel(key)
        if start >= state.high or (c == state.high and state.stable == state.high):
            log.info("store %s[%d] is up to date at changelog offset %d", *key, state.high)
            return
        restore = Restore(
            store, start, state.high, floor=c or 0, counted_from=c or 0, full=c is None
        )
        self.reader.start(key, restore)
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

    # -- restore in the loop -------------------------------------------------------------

    @property
    def restoring(self) -> dict[StoreKey, Restore]:
        return self.reader.restoring

    def restore_step(self) -> list[StoreKey]:
        """One batch of the restores under way; the stores whose restore finished."""
        done = self.reader.step(self._restart_in_full)
        if done:
            self._sizes_due = 0.0  # len() may scan a persistent store: refresh at the commit
        return done

    def _restart_in_full(self, key: StoreKey, why: str) -> None:
        """The restore position left the changelog (records deleted under it): start over."""
        store = self._wipe(key, why)
        topic = self.changelogs[key[0]]
        state = self.topics.partition_state(topic, key[1])
        self._keep_topic_id(key, state.topic_id)
        self.reader.start(key, Restore(store, state.low, state.high, full=True))
        log.info(
            "restoring store %s[%d] in full: changelog offsets %d..%d", *key, state.low, state.high
        )

    # -- the transaction -----------------------------------------------------------------

    def produce_changelogs(self, produce: Produce, when_full: Produce | None = None) -> int:
        """Send each store's last write per key into the open transaction.

        ``produce`` is the producer's own call; ``when_full`` retries a record it refused
        with BufferError (the worker's waits for room). Any other refusal propagates. The
        report goes to ``produce`` positionally (its ``callback``): confluent-kafka parses
        keyword arguments slowly, and this runs for about one changelog record per input.
        """
        sent = 0
        for key, store in self.stores.items():
            if key in self.restoring:
                continue
            pending = store.pending_changelog()
            if not pending:
                continue
            topic, partition = self.changelogs[key[0]], key[1]
            last = len(pending) - 1
            done = self._delivered(key)  # the last record's report carries the checkpoint
            for i, (k, v) in enumerate(pending.items()):
                report = done if i == last else None
                try:
                    produce(topic, v, k, partition, report)
                except BufferError:
                    if when_full is None:
                        raise
                    when_full(topic, v, k, partition, on_delivery=report)
            sent += last + 1
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

    def resync(self, keys: Iterable[StoreKey]) -> list[StoreKey]:
        """After a producer reset: bring the open stores ``keys`` to their changelogs'
        committed end; return those that restore.

        The last transaction may have committed or not, so no overlay survives, and each store
        that is not restoring already restarts a restore from its own checkpoint (committed
        state only ever sits at or behind Kafka, invariant 5): the changelog's tail decides.
        """
        self.aborted()
        return self.open(keys, only_open=True)

    def store(self, name: str, partition: int) -> Store:
        try:
            return self.stores[(name, partition)]
        except KeyError:
            raise TopologyError(
                f"store {name!r} is not available on partition {partition}: declare it on "
                "the processor (@app.processor(..., stores=[...]))"
            ) from None

    def close(self) -> None:
        """The worker stops: every store left is closed for good."""
        self.close_stores(list(self.stores))
        self.reader.close()
