"""The DSL on a real broker: repartitioned word counts, aggregates and stream-table joins.

Workers are real ``eokafka run`` processes running tests/apps/dsl_apps.py; every check reads
the outputs read_committed and compares them with a plain-Python reference.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.integration.harness import WorkerProcess, app_topics, wait_for, worker
from tests.kafka_helpers import (
    create_topic,
    end_offsets,
    produce_records,
    read_committed,
    topic_partitions,
    unique_name,
)

pytestmark = pytest.mark.integration
APPS = "tests.apps.dsl_apps"
VOCAB = (
    "the The THE cat Cat dog sat on a mat and ran far away quick brown fox jumps over lazy "
    "Kafka kafka stream Stream table join count word words exactly once of to is it"
).split()


def _workers(
    target: str, bootstrap: str, tmp: Path, env: dict[str, str], n: int
) -> list[WorkerProcess]:
    return [
        worker(f"{APPS}:{target}", bootstrap, tmp, f"w{i}", env, ["--instance-id", f"w{i}"])
        for i in range(n)
    ]


def _stop(workers: list[WorkerProcess]) -> None:
    for w in workers:
        assert w.terminate() == 0, w.log()[-3000:]


def _by_key(records: list[Any]) -> dict[str, list[Any]]:
    """Values per key in output order (one key lives in one partition, so order is kept)."""
    out: dict[str, list[Any]] = defaultdict(list)
    for r in records:
        out[r.key.decode()].append(json.loads(r.value))
    return out


def test_word_count_through_a_repartition_is_exact_through_sigkill(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rng = random.Random(7)
    sentences = [" ".join(rng.choices(VOCAB, k=rng.randint(1, 12))) for _ in range(4_000)]
    expected = Counter(w.lower() for s in sentences for w in s.split() if len(w) > 2)
    total = sum(expected.values())
    names = app_topics(kafka_bootstrap, "wc", 4)
    produce_records(
        kafka_bootstrap,
        names.src,
        [(f"s{i}".encode(), s.encode()) for i, s in enumerate(sentences)],
    )
    # No purge of committed repartition records: the test counts them all at the end.
    env = {**names.env, "EOKAFKA_PURGE_INTERVAL_MS": "3600000"}
    workers = _workers("wordcount", kafka_bootstrap, tmp_path, env, 2)
    try:
        for w in workers:
            w.start()
        # Kill one worker while counts are flowing: open transactions hold repartition
        # records and counts that must vanish, and the restart restores its stores.
        wait_for(
            lambda: sum(end_offsets(kafka_bootstrap, names.out).values()) > total // 4,
            120,
            "a quarter of the counts",
        )
        workers[0].kill()
        workers[0].start()
        records = read_committed(kafka_bootstrap, names.out, expected_count=total, timeout=180)
        counts = _by_key(records)
        assert {w: c[-1] for w, c in counts.items()} == expected
        wrong = {w: c for w, c in counts.items() if c != list(range(1, len(c) + 1))}
        assert not wrong, f"count sequences not 1,2,3,... for {sorted(wrong)[:5]}"
        repartition = f"{names.app_id}-by-word-repartition"
        assert len(topic_partitions(kafka_bootstrap, repartition)) == 4
        assert len(read_committed(kafka_bootstrap, repartition)) == total
        _stop(workers)
    finally:
        for w in workers:
            w.stop_quietly()


def test_aggregate_and_reduce_per_customer_match_a_python_reference(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rng = random.Random(11)
    amounts = rng.sample(range(1, 1_000_000), 6_000)  # distinct: the largest order is unique
    orders = [
        {"id": i, "customer": f"c{rng.randint(0, 49)}", "amount": amount}
        for i, amount in enumerate(amounts)
    ]
    names = app_topics(kafka_bootstrap, "agg", 3)
    out2 = unique_name("agg-out2")
    create_topic(kafka_bootstrap, out2, 3)
    env = {**names.env, "TEST_OUTPUT2": out2, "TEST_BACKEND": "rocksdb"}
    # Keyed by order id: one customer's orders are spread over every input partition.
    inputs = [(f"o{o['id']}".encode(), json.dumps(o).encode()) for o in orders]
    produce_records(kafka_bootstrap, names.src, inputs[:3_000])
    workers = _workers("customers", kafka_bootstrap, tmp_path, env, 2)
    try:
        for w in workers:
            w.start()
        produce_records(kafka_bootstrap, names.src, inputs[3_000:])
        stats = _by_key(read_committed(kafka_bootstrap, names.out, len(orders), timeout=180))
        largest = _by_key(read_committed(kafka_bootstrap, out2, len(orders), timeout=180))
        ref: dict[str, dict[str, Any]] = {}
        for o in orders:
            r = ref.setdefault(o["customer"], {"n": 0, "sum": 0, "max": 0, "largest": o})
            r["n"] += 1
            r["sum"] += o["amount"]
            r["max"] = max(r["max"], o["amount"])
            if o["amount"] > r["largest"]["amount"]:
                r["largest"] = o
        assert {c: s[-1] for c, s in stats.items()} == {
            c: {"n": r["n"], "sum": r["sum"], "max": r["max"]} for c, r in ref.items()
        }
        assert {c: s[-1] for c, s in largest.items()} == {c: r["largest"] for c, r in ref.items()}
        for customer, updates in stats.items():  # every order counted once, in some order
            assert [u["n"] for u in updates] == list(range(1, ref[customer]["n"] + 1)), customer
            pairs = zip(updates, updates[1:], strict=False)
            assert all(a["sum"] < b["sum"] and a["max"] <= b["max"] for a, b in pairs), customer
        _stop(workers)
    finally:
        for w in workers:
            w.stop_quietly()


def _table_loaded(bootstrap: str, group: str, topic: str) -> bool:
    """Read barrier: the app committed (offsets and store writes together) the whole table."""
    ends = end_offsets(bootstrap, topic)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in ends], timeout=10)
    finally:
        consumer.close()
    return all(tp.offset == ends[tp.partition] or ends[tp.partition] == 0 for tp in committed)


def test_stream_table_join_matches_a_dict_join(kafka_bootstrap: str, tmp_path: Path) -> None:
    rng = random.Random(3)
    names = app_topics(kafka_bootstrap, "join", 4)
    table, out2 = unique_name("join-prices"), unique_name("join-out2")
    create_topic(kafka_bootstrap, table, 4)
    create_topic(kafka_bootstrap, out2, 4)
    env = {**names.env, "TEST_TABLE": table, "TEST_OUTPUT2": out2}
    products = [f"p{i}" for i in range(80)]

    def table_updates(count: int) -> list[tuple[bytes, bytes | None]]:
        """Price changes, and now and then a deletion (tombstone)."""
        updates: list[tuple[bytes, bytes | None]] = []
        for _ in range(count):
            p = rng.choice(products[:60])  # p60..p79 are never in the table
            price = None if rng.random() < 0.1 else json.dumps({"price": rng.randint(1, 99)})
            updates.append((p.encode(), price.encode() if price else None))
        return updates

    def apply(updates: list[tuple[bytes, bytes | None]], prices: dict[str, int]) -> None:
        for key, value in updates:
            if value is None:
                prices.pop(key.decode(), None)
            else:
                prices[key.decode()] = json.loads(value)["price"]

    def stream_orders(start: int, count: int, prices: dict[str, int]) -> None:
        orders = [{"id": i, "product": rng.choice(products), "qty": rng.randint(1, 5)}
                  for i in range(start, start + count)]  # fmt: skip
        produce_records(
            kafka_bootstrap,
            names.src,
            [(o["product"].encode(), json.dumps(o).encode()) for o in orders],
        )
        expected_left = {o["id"]: (o["product"], prices.get(o["product"])) for o in orders}
        expected_inner = {
            o["id"]: o["qty"] * prices[o["product"]] for o in orders if o["product"] in prices
        }
        left = read_committed(kafka_bootstrap, out2, start + count, timeout=120)
        got_left = {
            v["id"]: (r.key.decode(), v["price"])
            for r in left
            if (v := json.loads(r.value))["id"] >= start
        }
        assert got_left == expected_left
        inner = [json.loads(r.value) for r in read_committed(kafka_bootstrap, names.out)]
        got_inner = Counter(v["id"] for v in inner if v["id"] >= start)
        assert all(n == 1 for n in got_inner.values()), "an order joined twice"
        assert {v["id"]: v["total"] for v in inner if v["id"] >= start} == expected_inner

    prices: dict[str, int] = {}
    first = table_updates(400)
    apply(first, prices)
    produce_records(kafka_bootstrap, table, first)
    workers = _workers("joins", kafka_bootstrap, tmp_path, env, 2)
    try:
        for w in workers:
            w.start()
        wait_for(lambda: _table_loaded(kafka_bootstrap, names.app_id, table), 120, "table load")
        stream_orders(0, 2_000, prices)
        # Change the table (including deletions), wait until the app has it, stream again.
        second = table_updates(150)
        apply(second, prices)
        produce_records(kafka_bootstrap, table, second)
        wait_for(lambda: _table_loaded(kafka_bootstrap, names.app_id, table), 120, "table update")
        stream_orders(2_000, 2_000, prices)
        _stop(workers)
    finally:
        for w in workers:
            w.stop_quietly()


def test_a_join_with_a_table_that_is_not_co_partitioned_refuses_to_start(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    names = app_topics(kafka_bootstrap, "nocop", 4)
    table = unique_name("nocop-prices")
    create_topic(kafka_bootstrap, table, 2)
    env = {**names.env, "TEST_TABLE": table, "TEST_OUTPUT2": names.out}
    [w] = _workers("joins", kafka_bootstrap, tmp_path, env, 1)
    try:
        w.start()
        assert w.wait(60) != 0
        assert "co-partition" in w.log(), w.log()[-2000:]
    finally:
        w.stop_quietly()
