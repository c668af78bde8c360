"""Restores driven step by step against the real broker.

The worker's restore runs in its loop, one batch per step, so a revocation can land between
two batches, and a changelog can be truncated or recreated under a store's checkpoint. These
tests drive the runtime's task manager directly, as the rebalance callbacks and the loop do,
to put it exactly there, and check the store's contents against a replay of what the
changelog holds.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

import eokafka
from eokafka.client_configs import admin_config, restore_consumer_config
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.tasks.changelog_reader import ChangelogReader, Restore
from eokafka.runtime.tasks.changelog_topics import ensure_changelogs
from eokafka.runtime.tasks.commits import TaskCommits
from eokafka.runtime.tasks.manager import TaskManager
from eokafka.runtime.tasks.store_loader import StoreLoader
from eokafka.runtime.tasks.task import Report
from eokafka.runtime.topics import TopicGuard
from eokafka.state import Store, changelog_topic
from tests.integration.harness import wait_for
from tests.kafka_helpers import create_topic, produce_records, unique_name

pytestmark = pytest.mark.integration
PER_PARTITION = 60_000  # several restore batches of 10,000
_PATIENCE_S = 30.0  # how long a re-sync would wait for offsets (no re-sync here)


def _changelog(seed: int) -> tuple[list[tuple[bytes, bytes]], dict[str, int]]:
    """An uncompacted changelog tail: keys rewritten many times; the last write wins."""
    rng = random.Random(seed)
    records: list[tuple[bytes, bytes]] = []
    final: dict[str, int] = {}
    for n in range(PER_PARTITION):
        key = f"k{rng.randrange(2_000)}"
        records.append((json.dumps(key).encode(), json.dumps(n).encode()))
        final[key] = n
    return records, final


class StoreTasks:
    """The task manager's "totals" stores of one input topic, moved as rebalances and the
    worker loop move them: ``open`` assigns inputs, ``close_stores`` revokes them for good."""

    def __init__(self, manager: TaskManager, src: str, metrics: WorkerMetrics) -> None:
        self.manager = manager
        self.src = src
        self.metrics = metrics

    def _tps(self, keys: list[tuple[str, int]]) -> list[TopicPartition]:
        return [TopicPartition(self.src, partition, 0) for _, partition in keys]

    def open(self, keys: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Assign the inputs of these stores, their committed offsets known at once; those
        that restore (their inputs paused)."""
        tps = self._tps(keys)
        self.manager.assigned(tps)
        return [("totals", tp.partition) for tp in self.manager.offsets_known(tps, {})]

    def close_stores(self, keys: list[tuple[str, int]]) -> None:
        self.manager.revoked(self._tps(keys))
        self.manager.settle()  # not given back: closed

    def restore_step(self) -> list[tuple[str, int]]:
        return [("totals", tp.partition) for tp in self.manager.restore_step()]

    @property
    def restoring(self) -> dict[tuple[str, int], Restore]:
        tasks = self.manager.tasks.values()
        return {("totals", t.index): r for t in tasks for r in t.restores.values()}

    @property
    def stores(self) -> dict[tuple[str, int], Store]:
        tasks = self.manager.tasks.values()
        return {("totals", t.index): s for t in tasks for s in t.stores.values()}

    def store(self, name: str, partition: int) -> Store:
        return self.stores[(name, partition)]

    def produce_changelogs(self, producer: Producer) -> None:
        """The commit's step 2 for the stores, through ``producer``'s own produce()."""

        def send(topic: str, partition: int, records: dict, report: Report) -> int:
            items = list(records.items())
            for i, (k, v) in enumerate(items):
                producer.produce(topic, v, k, partition, report if i == len(items) - 1 else None)
            return len(items)

        TaskCommits(self.manager, self.metrics, send, _PATIENCE_S).prepare([])

    def committed(self) -> None:
        TaskCommits(self.manager, self.metrics, None, _PATIENCE_S).committed([])

    def close(self) -> None:
        self.manager.close()


def _tasks(
    bootstrap: str, tmp_path: Path, backend: str, config: dict[str, str] | None = None
) -> tuple[StoreTasks, str, str]:
    src = unique_name("restore-in")
    create_topic(bootstrap, src, 2)
    app = eokafka.App(
        unique_name("restore"),
        bootstrap_servers=bootstrap,
        state_dir=str(tmp_path),
        config=config or {},
    )
    app.store("totals", backend=backend)  # type: ignore[arg-type]

    @app.processor(src, stores=["totals"])
    def noop(record: object, ctx: object) -> None:
        pass

    settings = app.settings()
    topology = app.topology
    topology.validate()
    guard = TopicGuard(AdminClient(admin_config(settings)), create=False)
    metrics = WorkerMetrics(settings.application_id, "test", "0")
    changelogs = {"totals": changelog_topic(settings.application_id, "totals")}
    ensure_changelogs(guard, topology, changelogs)
    loader = StoreLoader(settings, topology.stores, changelogs, metrics, guard)
    reader = ChangelogReader(
        lambda: Consumer(restore_consumer_config(settings)), changelogs, metrics, restoring=True
    )
    manager = TaskManager(topology, None, metrics, settings.application_id, loader, reader)
    return StoreTasks(manager, src, metrics), src, changelogs["totals"]


def _key(tp: TopicPartition) -> tuple[str, int]:
    """The store instance the input partition ``tp`` is served by."""
    return ("totals", tp.partition)


class Restorer:
    """Steps the restore and remembers which inputs became ready, over all steps."""

    def __init__(self, tasks: StoreTasks) -> None:
        self.tasks = tasks
        self.ready: set[int] = set()

    def step(self) -> None:
        self.ready.update(key[1] for key in self.tasks.restore_step())

    def until_ready(self, partition: int) -> None:
        def done() -> bool:
            self.step()
            return partition in self.ready

        wait_for(done, 60, f"the restore of partition {partition}", interval=0)

    def until_half_way(self, partition: int) -> None:
        """Step until ``partition`` has some records restored but not all."""
        key = ("totals", partition)

        def started() -> bool:
            self.step()
            restore = self.tasks.restoring.get(key)
            return restore is None or restore.restored > 0

        wait_for(started, 60, f"a first restore batch of partition {partition}", interval=0)
        assert key in self.tasks.restoring, f"partition {partition} restored in one step"


@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
def test_a_revocation_in_the_middle_of_a_restore_is_survived(
    kafka_bootstrap: str, tmp_path: Path, backend: str
) -> None:
    tasks, src, changelog = _tasks(kafka_bootstrap, tmp_path, backend)
    expected = {}
    for p in (0, 1):
        records, expected[p] = _changelog(seed=p)
        produce_records(kafka_bootstrap, changelog, records, partition=p)
    try:
        restoring = tasks.open([("totals", 0), ("totals", 1)])
        assert sorted(key[1] for key in restoring) == [0, 1]
        restorer = Restorer(tasks)
        restorer.until_half_way(0)

        tasks.close_stores([("totals", 0)])  # revoked half-way, not given back
        assert ("totals", 0) not in tasks.stores

        restorer.until_ready(1)
        assert dict(tasks.store("totals", 1).items()) == expected[1]

        restorer.ready.clear()
        assert tasks.open([("totals", 0)]) == [("totals", 0)]
        restorer.until_half_way(0)
        tasks.committed()  # a commit while a store restores must leave that store alone
        restorer.until_ready(0)
        assert dict(tasks.store("totals", 0).items()) == expected[0]
        assert not tasks.restoring
    finally:
        tasks.close()


def test_a_reopened_persistent_store_restores_only_the_new_tail(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    tasks, src, changelog = _tasks(kafka_bootstrap, tmp_path, "rocksdb")
    records, _ = _changelog(seed=7)
    half = PER_PARTITION // 2
    produce_records(kafka_bootstrap, changelog, records[:half], partition=0)
    tp = TopicPartition(src, 0)
    try:
        restorer = Restorer(tasks)
        tasks.open([_key(tp)])
        restorer.until_ready(0)
        tasks.close_stores([_key(tp)])

        produce_records(kafka_bootstrap, changelog, records[half:], partition=0)
        tasks.open([_key(tp)])
        restore = tasks.restoring[("totals", 0)]
        restorer.ready.clear()
        restorer.until_ready(0)
        assert restore.restored == PER_PARTITION - half
        assert dict(tasks.store("totals", 0).items()) == {
            json.loads(k): json.loads(v) for k, v in records
        }
    finally:
        tasks.close()


def _kv(records: list[tuple[bytes, bytes | None]]) -> dict[object, object]:
    """What a full restore of these changelog records gives: the last value per key."""
    state: dict[object, object] = {}
    for k, v in records:
        if v is None:
            state.pop(json.loads(k), None)
        else:
            state[json.loads(k)] = json.loads(v)
    return state


def _records(keys: range, value: int | None) -> list[tuple[bytes, bytes | None]]:
    data = None if value is None else json.dumps(value).encode()
    return [(json.dumps(f"k{i}").encode(), data) for i in keys]


def _delete_records(bootstrap: str, topic: str, partition: int, before: int) -> None:
    """Truncate as DeleteRecords does; the broker refuses it on a compact-only topic, so the
    changelog is made ``compact,delete`` first, as a window store's is."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    policy = ConfigEntry(
        "cleanup.policy", "compact,delete", incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[policy])
    admin.incremental_alter_configs([resource])[resource].result(timeout=30)
    # The broker applies a config change to its logs asynchronously: until it has, the
    # partition is still compact-only and DeleteRecords is refused with POLICY_VIOLATION.
    deadline = time.monotonic() + 30
    while True:
        futures = admin.delete_records([TopicPartition(topic, partition, before)])
        try:
            for future in futures.values():
                future.result(timeout=30)
            return
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.POLICY_VIOLATION or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def _recreate(bootstrap: str, topic: str, partitions: int) -> None:
    """Delete the topic and create it again (deletion finishes in the background)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([topic])[topic].result(timeout=30)

    def created() -> bool:
        try:
            create_topic(bootstrap, topic, partitions, config={"cleanup.policy": "compact"})
            return True
        except KafkaException as exc:
            if exc.args[0].code() in (KafkaError.TOPIC_ALREADY_EXISTS, KafkaError.UNKNOWN):
                return False
            raise

    wait_for(created, 60, f"{topic} created again", interval=0.2)


def _restore_in_full(tasks: StoreTasks, tp: TopicPartition) -> Restorer:
    restorer = Restorer(tasks)
    assert tasks.open([_key(tp)]) == [_key(tp)]
    restorer.until_ready(tp.partition)
    return restorer


def test_a_changelog_truncated_under_the_checkpoint_restores_in_full(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tasks, src, changelog = _tasks(kafka_bootstrap, tmp_path, "rocksdb")
    tp = TopicPartition(src, 0)
    first = _records(range(100), 1)
    produce_records(kafka_bootstrap, changelog, first, partition=0)
    try:
        _restore_in_full(tasks, tp)
        tasks.close_stores([_key(tp)])  # checkpoint 100
        # Tombstones for k0..k49, then new values for k100..k149; the tombstones (and with
        # them the checkpoint) are deleted, as retention or DeleteRecords would.
        later = _records(range(50), None) + _records(range(100, 150), 2)
        produce_records(kafka_bootstrap, changelog, later, partition=0)
        _delete_records(kafka_bootstrap, changelog, 0, 150)
        with caplog.at_level(logging.WARNING, "eokafka.stores"):
            _restore_in_full(tasks, tp)
        assert dict(tasks.store("totals", 0).items()) == _kv(later[50:])
        assert "below the low watermark 150" in caplog.text
    finally:
        tasks.close()


def test_a_restore_position_deleted_under_it_restarts_in_full(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A tiny prefetch keeps the restore consumer close to its position between steps.
    config = {
        "consumer.queued.max.messages.kbytes": "1",
        "consumer.max.partition.fetch.bytes": "1024",
    }
    tasks, src, changelog = _tasks(kafka_bootstrap, tmp_path, "rocksdb", config)
    records, _ = _changelog(seed=3)
    for i in range(0, PER_PARTITION, 1_000):  # many small batches
        produce_records(kafka_bootstrap, changelog, records[i : i + 1_000], partition=0)
    tp = TopicPartition(src, 0)
    try:
        restorer = Restorer(tasks)
        assert tasks.open([_key(tp)]) == [_key(tp)]
        restorer.until_half_way(0)
        cut = PER_PARTITION - 1_000
        _delete_records(kafka_bootstrap, changelog, 0, cut)
        with caplog.at_level(logging.WARNING, "eokafka.stores"):
            restorer.until_ready(0)
        assert dict(tasks.store("totals", 0).items()) == _kv(records[cut:])
        assert "out of range" in caplog.text
    finally:
        tasks.close()


@pytest.mark.parametrize("new_records", [10, 150])
def test_a_recreated_changelog_restores_in_full(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, new_records: int
) -> None:
    """Fewer new records than the checkpoint: the offsets tell. More: only the topic id."""
    tasks, src, changelog = _tasks(kafka_bootstrap, tmp_path, "rocksdb")
    tp = TopicPartition(src, 0)
    produce_records(kafka_bootstrap, changelog, _records(range(100), 1), partition=0)
    try:
        _restore_in_full(tasks, tp)
        tasks.close_stores([_key(tp)])
        _recreate(kafka_bootstrap, changelog, 2)
        fresh = _records(range(200, 200 + new_records), 3)
        produce_records(kafka_bootstrap, changelog, fresh, partition=0)
        with caplog.at_level(logging.WARNING, "eokafka.stores"):
            tasks.open([_key(tp)])
            Restorer(tasks).until_ready(0)
        assert dict(tasks.store("totals", 0).items()) == _kv(fresh)
        assert "wiping it to restore in full" in caplog.text
    finally:
        tasks.close()


def _writer(bootstrap: str) -> Producer:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": unique_name("changelog-writer"),
            "delivery.report.only.error": False,
        }
    )
    producer.init_transactions(30)
    return producer


def _commit_through_the_store(tasks: StoreTasks, producer: Producer, values: dict) -> None:
    """What the worker does: store writes, changelog records in a transaction, commit."""
    store = tasks.store("totals", 0)
    for k, v in values.items():
        store.put(k, v)
    producer.begin_transaction()
    tasks.produce_changelogs(producer)
    producer.commit_transaction(30)
    producer.poll(0)  # delivery reports: the checkpoints
    tasks.committed()


def test_an_up_to_date_store_is_not_paused_and_a_tail_is_read_only_when_it_may_hold_data(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    tasks, src, changelog = _tasks(kafka_bootstrap, tmp_path, "rocksdb")
    tp = TopicPartition(src, 0)
    ours, zombie = _writer(kafka_bootstrap), _writer(kafka_bootstrap)
    try:
        assert tasks.open([_key(tp)]) == []  # an empty changelog: nothing to restore
        _commit_through_the_store(tasks, ours, {"a": 1, "b": 2})
        _commit_through_the_store(tasks, ours, {"a": 3})
        tasks.close_stores([_key(tp)])
        # The checkpoint accounts for the commit marker: reopening reads nothing.
        assert tasks.open([_key(tp)]) == []
        assert not tasks.restoring
        assert dict(tasks.store("totals", 0).items()) == {"a": 3, "b": 2}
        tasks.close_stores([_key(tp)])

        # A zombie's aborted records in the tail must be read (they might have been data),
        # and change nothing.
        zombie.begin_transaction()
        zombie.produce(changelog, json.dumps(99).encode(), json.dumps("a").encode(), 0)
        zombie.flush(30)  # written, then aborted
        zombie.abort_transaction(30)
        restorer = _restore_in_full(tasks, tp)
        assert tasks.metrics.restored.labels("totals", "0")._value.get() == 0
        assert dict(tasks.store("totals", 0).items()) == {"a": 3, "b": 2}
        tasks.close_stores([_key(tp)])
        assert tasks.open([_key(tp)]) == []  # the restore checkpointed past them
        tasks.close_stores([_key(tp)])

        # A transaction still open on the changelog (or a commit whose marker is not yet
        # written) holds the restore until it is resolved; what it commits is restored.
        zombie.begin_transaction()
        zombie.produce(changelog, json.dumps(7).encode(), json.dumps("c").encode(), 0)
        zombie.flush(30)
        assert tasks.open([_key(tp)]) == [_key(tp)]
        restorer.ready.clear()
        for _ in range(10):
            restorer.step()
        assert 0 not in restorer.ready, "the restore ended below an open transaction"
        zombie.commit_transaction(30)
        restorer.until_ready(0)
        assert dict(tasks.store("totals", 0).items()) == {"a": 3, "b": 2, "c": 7}
    finally:
        tasks.close()


def test_one_unresolved_offset_after_a_commit_checkpoint_is_read(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A commit checkpoint ``c`` equal to the end offset is up to date only if no transaction
    is open: the one offset before ``c`` may be another writer's record instead of the
    commit's marker, when that marker is not written yet."""
    tasks, src, changelog = _tasks(kafka_bootstrap, tmp_path, "rocksdb")
    tp = TopicPartition(src, 0)
    produce_records(kafka_bootstrap, changelog, _records(range(10), 1), partition=0)
    other = _writer(kafka_bootstrap)
    try:
        _restore_in_full(tasks, tp)
        other.begin_transaction()
        other.produce(changelog, json.dumps(5).encode(), json.dumps("k0").encode(), 0)
        other.flush(30)  # offset 10, its transaction open: end offset 11
        # As a commit whose last changelog record is at 9 leaves it (marker not yet written).
        tasks.store("totals", 0).backend.apply({}, 11)
        tasks.close_stores([_key(tp)])
        restorer = Restorer(tasks)
        assert tasks.open([_key(tp)]) == [_key(tp)]
        for _ in range(10):
            restorer.step()
        assert 0 not in restorer.ready, "the restore ended below an open transaction"
        other.commit_transaction(30)
        restorer.until_ready(0)
        assert tasks.store("totals", 0).get("k0") == 5
    finally:
        tasks.close()
