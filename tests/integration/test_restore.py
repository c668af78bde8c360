"""Restores driven step by step against the real broker: a rebalance in the middle of one.

The worker's restore runs in its loop, one batch per step, so a revocation can land between
two batches. These tests drive the runtime's StoreTasks directly to put it exactly there.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

import eokafka
from eokafka.config import admin_config
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.stores import StoreTasks
from eokafka.runtime.topics import TopicGuard
from tests.integration.harness import wait_for
from tests.kafka_helpers import create_topic, produce_records, unique_name

pytestmark = pytest.mark.integration
PER_PARTITION = 60_000  # several restore batches of 10,000


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


def _tasks(bootstrap: str, tmp_path: Path, backend: str) -> tuple[StoreTasks, str, str]:
    src = unique_name("restore-in")
    create_topic(bootstrap, src, 2)
    app = eokafka.App(
        unique_name("restore"), bootstrap_servers=bootstrap, state_dir=str(tmp_path)
    )
    app.store("totals", backend=backend)  # type: ignore[arg-type]

    @app.processor(src, stores=["totals"])
    def noop(record: object, ctx: object) -> None:
        pass

    settings = app.settings()
    guard = TopicGuard(AdminClient(admin_config(settings)), create=False)
    metrics = WorkerMetrics(settings.application_id, "test", "0")
    tasks = StoreTasks(settings, app.topology, metrics, guard)
    tasks.ensure_changelogs()
    return tasks, src, f"{settings.application_id}-totals-changelog"


class Restorer:
    """Steps the restore and remembers which inputs became ready, over all steps."""

    def __init__(self, tasks: StoreTasks) -> None:
        self.tasks = tasks
        self.ready: set[int] = set()

    def step(self) -> None:
        self.ready.update(tp.partition for tp in self.tasks.restore_step())

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
        paused = tasks.open_partitions([TopicPartition(src, 0), TopicPartition(src, 1)])
        assert sorted(tp.partition for tp in paused) == [0, 1]
        restorer = Restorer(tasks)
        restorer.until_half_way(0)

        tasks.close_partitions([TopicPartition(src, 0)])  # revoked half-way
        assert ("totals", 0) not in tasks.stores

        restorer.until_ready(1)
        assert dict(tasks.store("totals", 1).items()) == expected[1]

        restorer.ready.clear()
        assert tasks.open_partitions([TopicPartition(src, 0)]) == [TopicPartition(src, 0)]
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
        tasks.open_partitions([tp])
        restorer.until_ready(0)
        tasks.close_partitions([tp])

        produce_records(kafka_bootstrap, changelog, records[half:], partition=0)
        tasks.open_partitions([tp])
        restore = tasks.restoring[("totals", 0)]
        restorer.ready.clear()
        restorer.until_ready(0)
        assert restore.restored == PER_PARTITION - half
        assert dict(tasks.store("totals", 0).items()) == {
            json.loads(k): json.loads(v) for k, v in records
        }
    finally:
        tasks.close()
