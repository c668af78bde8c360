"""Interop with the rest of the Kafka world on a real broker (docs/architecture.md invariant 15).

Keys are partitioned as the Java client does, so a stream the app re-keys finds every key of
a table written by a Java-style producer; the placement is checked against an independent
transcription of Kafka's murmur2 (tests/java_partitioner.py), never against eokafka's.
And one input topic has one source: however a record fans out, its outputs and its poison
verdict are all-or-nothing.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.integration.harness import app_topics, wait_for, worker
from tests.integration.test_dsl import _table_loaded
from tests.java_partitioner import java_partition
from tests.kafka_helpers import create_topic, produce_records, read_committed, unique_name

pytestmark = pytest.mark.integration
APPS = "tests.apps.interop_apps"
PARTITIONS = 4


def _product_names(rng: random.Random) -> list[str]:
    """Keys of many lengths (each murmur2 tail length), ASCII and not."""
    stems = ["p", "product", "café", "ключ", "商品", "a-little-bit-longer-product-name"]
    return [f"{rng.choice(stems)}-{i}" for i in range(60)]


def _produce_like_java(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    """Write each record to the partition a Java producer would pick for its key."""
    by_partition: dict[int, list[tuple[bytes | None, bytes | None]]] = defaultdict(list)
    for key, value in records:
        by_partition[java_partition(key.encode(), PARTITIONS)].append((key.encode(), value))
    for partition, batch in sorted(by_partition.items()):
        produce_records(bootstrap, topic, batch, partition=partition)


def test_a_rekeyed_stream_joins_a_table_written_like_the_java_client(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rng = random.Random(19)
    names = app_topics(kafka_bootstrap, "ijoin", PARTITIONS)
    table = unique_name("ijoin-prices")
    create_topic(kafka_bootstrap, table, PARTITIONS)
    products = _product_names(rng)
    prices = {p: rng.randint(1, 999) for p in products}
    _produce_like_java(
        kafka_bootstrap, table, [(p, json.dumps(price).encode()) for p, price in prices.items()]
    )
    orders = [{"id": i, "product": rng.choice(products)} for i in range(2_000)]
    env = {**names.env, "TEST_TABLE": table, "EOKAFKA_PURGE_INTERVAL_MS": "3600000"}
    workers = [
        worker(f"{APPS}:rekeyed_join", kafka_bootstrap, tmp_path, f"w{i}", env,
               ["--instance-id", f"w{i}"])
        for i in range(2)
    ]  # fmt: skip
    try:
        for w in workers:
            w.start()
        wait_for(lambda: _table_loaded(kafka_bootstrap, names.app_id, table), 120, "table load")
        # Keyed by order id: the app re-keys each order by its product.
        produce_records(
            kafka_bootstrap,
            names.src,
            [(f"order-{o['id']}".encode(), json.dumps(o).encode()) for o in orders],
        )
        out = read_committed(kafka_bootstrap, names.out, len(orders), timeout=180)
        found = Counter(json.loads(r.value)[0] for r in out)
        assert all(n == 1 for n in found.values()), "an order joined twice"
        got = {json.loads(r.value)[0]: json.loads(r.value)[1] for r in out}
        expected = {o["id"]: prices[o["product"]] for o in orders}
        missed = sorted(i for i, price in got.items() if price is None)
        assert not missed, f"{len(missed)} of {len(orders)} lookups found no price"
        assert got == expected
        # The worker's transactional producer put every re-keyed record where Java would.
        repartition = read_committed(kafka_bootstrap, f"{names.app_id}-by-product-repartition")
        assert len(repartition) == len(orders)
        for records in (repartition, out):
            placed = Counter(
                r.partition == java_partition(r.key, PARTITIONS) for r in records
            )
            assert placed == {True: len(records)}, placed
        for w in workers:
            assert w.terminate() == 0, w.log()[-3000:]
    finally:
        for w in workers:
            w.stop_quietly()


def test_the_source_producer_partitions_like_the_java_client(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    app_id, out = unique_name("isrc"), unique_name("isrc-out")
    create_topic(kafka_bootstrap, out, PARTITIONS)
    folder = tmp_path / "in"
    folder.mkdir()
    ids = [f"id-{n}-{'x' * (n % 5)}" for n in range(400)]
    (folder / "part-0.jsonl").write_text("".join(json.dumps({"id": i}) + "\n" for i in ids))
    env = {"TEST_APP_ID": app_id, "TEST_SOURCE_DIR": str(folder), "TEST_OUTPUT": out}
    w = worker("tests.apps.file_source:app", kafka_bootstrap, tmp_path, "w", env,
               ["--instance-id", "a"]).start()  # fmt: skip
    try:
        records = read_committed(kafka_bootstrap, out, expected_count=len(ids), timeout=120)
        assert sorted(r.key.decode() for r in records) == sorted(ids)
        wrong = [r.key for r in records if r.partition != java_partition(r.key, PARTITIONS)]
        assert not wrong, f"{len(wrong)} of {len(records)} records off the Java partition"
        assert w.terminate() == 0, w.log()[-3000:]
    finally:
        w.stop_quietly()


def test_one_source_fans_out_all_or_nothing_with_one_dead_letter_per_bad_record(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A count (store write) runs before the branch that fails: a bad record must leave no
    count, no copy, and exactly one dead letter naming the topic's one processor."""
    rng = random.Random(23)
    names = app_topics(kafka_bootstrap, "ifan", PARTITIONS)
    out2 = unique_name("ifan-out2")
    create_topic(kafka_bootstrap, out2, PARTITIONS)
    orders = [
        (f"c{rng.randrange(12)}", {"id": i, "bad": rng.random() < 0.05}) for i in range(3_000)
    ]
    good = [(k, o) for k, o in orders if not o["bad"]]
    bad = sorted(o["id"] for _, o in orders if o["bad"])
    assert bad
    env = {**names.env, "TEST_OUTPUT2": out2, "EOKAFKA_ON_ERROR": "dead-letter"}
    w = worker(f"{APPS}:fan_out", kafka_bootstrap, tmp_path, "w", env,
               ["--instance-id", "a"]).start()  # fmt: skip
    try:
        produce_records(
            kafka_bootstrap, names.src, [(k.encode(), json.dumps(o).encode()) for k, o in orders]
        )
        dlq = f"{names.app_id}-dlq"
        read_committed(kafka_bootstrap, out2, len(good), timeout=180)
        read_committed(kafka_bootstrap, names.out, len(good), timeout=180)
        read_committed(kafka_bootstrap, dlq, len(bad), timeout=180)
        assert w.terminate() == 0, w.log()[-3000:]
        # Everything the app committed, to the end: nothing more, nothing less.
        copies = read_committed(kafka_bootstrap, out2)
        counts = read_committed(kafka_bootstrap, names.out)
        dead = read_committed(kafka_bootstrap, dlq)
        assert sorted(json.loads(r.value)["id"] for r in copies) == [o["id"] for _, o in good]
        per_key: dict[str, list[int]] = defaultdict(list)
        for r in counts:
            per_key[r.key.decode()].append(json.loads(r.value))
        totals = Counter(k for k, _ in good)
        assert per_key == {k: list(range(1, n + 1)) for k, n in totals.items()}
        assert sorted(json.loads(r.value)["id"] for r in dead) == bad  # each once
        processors = {dict(r.headers)["eokafka.processor"].decode() for r in dead}
        [processor] = processors  # one processor: both branches, one name
        assert f"to({names.out})" in processor and f"to({out2})" in processor, processor
    finally:
        w.stop_quietly()
