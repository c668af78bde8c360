"""Bounded runs: budgets, summaries, and a bounded worker over in-memory Kafka clients."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import TopicPartition

import eokafka
from eokafka import config, serdes
from eokafka.config import Settings
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.clients import Clients
from eokafka.runtime.process.bounded import BoundedRun, Bounds, RunSummary, capture, total
from eokafka.runtime.process.worker import Worker
from eokafka.testing.clients import MemoryAdmin, MemoryConsumer, MemoryProducer, no_leave
from eokafka.testing.cluster import MemoryCluster


def test_max_records_is_split_evenly_over_the_workers() -> None:
    bounds = Bounds(until_end=True, max_records=10)
    assert [bounds.share(slot, 3).max_records for slot in range(3)] == [4, 3, 3]
    assert Bounds(until_end=True).share(1, 3).max_records is None


def test_the_summary_of_workers_adds_counts_and_takes_the_longest_time() -> None:
    summaries = [RunSummary(300, 600, 2.0, "end"), RunSummary(100, 200, 4.0, "end")]
    assert total(summaries) == RunSummary(400, 800, 4.0, "end")
    assert total(summaries).text() == (
        "bounded run finished (end): 400 records in, 800 out, in 4.0 s (100 records/s)"
    )
    assert total([*summaries, RunSummary(0, 0, 0.0, "interrupted")]).reason == "interrupted"
    assert total([]).reason == "interrupted"
    mixed = [RunSummary(1, 1, 1.0, "max-seconds"), RunSummary(1, 1, 1.0, "end")]
    assert total(mixed).reason == "end, max-seconds"


# -- the bounded worker over in-memory Kafka clients --------------------------------------


def _copy_app() -> eokafka.App:
    app = eokafka.App("copy")

    @app.processor("in")
    def copy(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
        ctx.send("out", record.raw_key, record.raw_value)

    return app


def _clients(cluster: MemoryCluster) -> Clients:
    ticks = itertools.count()
    return Clients(
        consumer=lambda conf: MemoryConsumer(cluster, conf),
        restore_consumer=lambda conf: MemoryConsumer(cluster, conf),
        producer=lambda conf: MemoryProducer(cluster, conf),
        admin=lambda conf: MemoryAdmin(cluster, conf),
        leave=no_leave,
        release_predecessor=no_leave,
        clock=lambda: next(ticks) * 0.01,  # every reading 10 ms later: commit intervals pass
    )


def _settings(app: eokafka.App, tmp: Path) -> Settings:
    # One record per batch and per transaction: a partition's EOF comes after the
    # transaction of its last record has committed.
    cli = {"create_topics": True, "state_dir": str(tmp), "batch_size": 1, "commit_every": 1}
    return config.resolve(app.application_id, {}, env={}, cli=cli)


def _run(
    app: eokafka.App, cluster: MemoryCluster, tmp: Path, bounds: Bounds | None = None, **kw: Any
) -> RunSummary:
    """Capture the bounds (unless given), then run one bounded worker until it stops."""
    clients = _clients(cluster)
    settings = _settings(app, tmp)
    if bounds is None:
        bounds = capture(settings, app.topology, clients=clients, **kw)
    metrics = WorkerMetrics(app.application_id, "w", "test")
    worker = Worker(app.topology, settings, "w", metrics, bounds, clients)
    assert worker.bound is not None
    worker.start()
    for _ in range(10_000):  # the worker loop, with a limit instead of a hang
        worker.step()
        if worker.bound.finished():
            break
    else:
        raise AssertionError(f"the bounded run never finished; group at {cluster.group_offsets}")
    worker.stop()
    worker.loop()  # commits what is open and closes
    return worker.bound.summary()


def _write(cluster: MemoryCluster, partition: int, values: range, txn: str = "") -> None:
    """Plain records, or one transaction (``txn``: "commit" or "abort")."""
    producer = MemoryProducer(cluster, {"transactional.id": "upstream"} if txn else {})
    if txn:
        producer.init_transactions()
        producer.begin_transaction()
    for v in values:
        producer.produce("in", str(v).encode(), str(v).encode(), partition)
    if txn == "commit":
        producer.commit_transaction()
    elif txn == "abort":
        producer.abort_transaction()


def _values(cluster: MemoryCluster, topic: str = "out") -> list[int]:
    return sorted(int(entry.value or b"") for _, _, entry in cluster.records(topic, False))


@pytest.mark.parametrize("late_on_2", [False, True], ids=["eof-moves-it", "held-record-moves-it"])
def test_until_end_stops_at_the_end_offsets_behind_trailing_markers(
    tmp_path: Path, late_on_2: bool
) -> None:
    """Partition 2 is read last; its position passes the trailing markers either by an EOF
    or by a record after the end held back, and either way an offsets-only commit."""
    cluster = MemoryCluster(default_partitions=3)
    cluster.create_topic("in", 3)
    _write(cluster, 0, range(10))
    for p, first in ((1, 10), (2, 30)):  # these logs end in a commit and an abort marker
        _write(cluster, p, range(first, first + 5), txn="commit")
        _write(cluster, p, range(100, 103), txn="abort")
    app = _copy_app()
    clients = _clients(cluster)
    bounds = capture(_settings(app, tmp_path), app.topology, True, None, None, clients)
    assert bounds.ends == {("in", 0): 10, ("in", 1): 10, ("in", 2): 10}
    late = [*range(20, 23), *(range(23, 25) if late_on_2 else ())]
    _write(cluster, 0, range(20, 23))  # after the start: not for this run
    if late_on_2:
        _write(cluster, 2, range(23, 25))

    summary = _run(app, cluster, tmp_path, bounds)
    assert (summary.reason, summary.records_in, summary.records_out) == ("end", 20, 20)
    assert _values(cluster) == [*range(15), *range(30, 35)]
    # The records after the start stay uncommitted for the next run; the committed offsets
    # are past the trailing markers.
    assert cluster.group_offsets["copy"] == {("in", 0): 10, ("in", 1): 10, ("in", 2): 10}

    again = _run(app, cluster, tmp_path, until_end=True, max_records=None, max_seconds=None)
    assert (again.reason, again.records_in) == ("end", len(late))
    assert _values(cluster) == sorted([*range(15), *late, *range(30, 35)])


def test_max_records_holds_back_the_rest_of_the_batch(tmp_path: Path) -> None:
    cluster = MemoryCluster(default_partitions=2)
    cluster.create_topic("in", 2)
    _write(cluster, 0, range(10))
    _write(cluster, 1, range(10, 20))
    app = _copy_app()
    kw: dict[str, Any] = {"until_end": False, "max_records": 7, "max_seconds": None}
    first = _run(app, cluster, tmp_path, **kw)
    assert (first.reason, first.records_in, len(_values(cluster))) == ("max-records", 7, 7)
    second = _run(app, cluster, tmp_path, **{**kw, "max_records": 100, "until_end": True})
    assert (second.reason, second.records_in) == ("end", 13)
    assert _values(cluster) == list(range(20))


def test_until_end_follows_a_repartition_to_its_end(tmp_path: Path) -> None:
    app = eokafka.App("wc")
    S, J = serdes.String(), serdes.Json()
    app.stream("in", key_serde=S, value_serde=S).flat_map(
        lambda k, v: [(w, w) for w in v.split()]
    ).group_by_key(name="by-word").count(name="n").to("out", key_serde=S, value_serde=J)
    cluster = MemoryCluster(default_partitions=3)
    cluster.create_topic("in", 3)
    sentences = ["a b c", "a a", "c b a", "d"]
    for i, sentence in enumerate(sentences):
        cluster.append("in", i % 3, S.serialize(f"s{i}"), S.serialize(sentence), 0, None)
    summary = _run(app, cluster, tmp_path, until_end=True, max_records=None, max_seconds=None)
    assert (summary.reason, summary.records_in, summary.records_out) == ("end", 4, 9)
    last = {
        S.deserialize(entry.key): J.deserialize(entry.value)
        for _, _, entry in cluster.records("out", False)
    }
    assert last == {"a": 4, "b": 2, "c": 2, "d": 1}


def test_an_input_awaiting_its_committed_offset_is_not_at_its_end(tmp_path: Path) -> None:
    """Assigned inputs whose committed offsets the coordinator has not given yet have no
    position; the run is not done with them (it was, vacuously: no owned input was left)."""
    app = _copy_app()
    settings = _settings(app, tmp_path)
    bounds = Bounds(True, None, None, {("in", 0): 10}, {("in", 0): 0})
    awaiting = SimpleNamespace(
        awaiting=[TopicPartition("in", 0)], assignment=[], committed_offsets=dict, by_input={}
    )
    stand_in: Any = SimpleNamespace(tally=None)
    run = BoundedRun(bounds, app.topology, settings, stand_in, awaiting, stand_in, stand_in)  # type: ignore[arg-type]
    assert not run._own_done()
