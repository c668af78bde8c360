"""Global tables on a real broker, with real worker processes (tests/apps/global_apps.py).

A stream of orders (2 partitions) joins a global table of customers (3 partitions): no
co-partitioning. Checked against a plain-Python join over the same records: every order once,
with the exact customer value, through repeated SIGKILLs of the workers; an update of the
table while the workers run reaches later orders; a table written by a transactional producer
shows its committed records only, at restore and while tailing.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.integration.harness import app_topics, wait_for, worker
from tests.integration.pausing import dead, kill_at_pause, pausing_workers
from tests.integration.test_dsl import _table_loaded
from tests.kafka_helpers import create_topic, produce_records, read_committed, unique_name

pytestmark = pytest.mark.integration
TARGET = "tests.apps.global_apps:app"
KINDS = ("inner", "left")
Order = tuple[str, str]  # (order id, customer key)


def _customers(rng: random.Random) -> list[tuple[str, Any]]:
    """Writes of the table: customers c0..c39, some written twice, some deleted."""
    writes: list[tuple[str, Any]] = [(f"c{i}", {"name": f"n{i}"}) for i in range(40)]
    for i in rng.sample(range(40), 10):
        writes.append((f"c{i}", {"name": f"n{i}-2"}))
    for i in rng.sample(range(40), 5):
        writes.append((f"c{i}", None))
    return writes


def _encode(writes: list[tuple[str, Any]]) -> list[tuple[bytes | None, bytes | None]]:
    return [(k.encode(), None if v is None else json.dumps(v).encode()) for k, v in writes]


def _produce_orders(bootstrap: str, topic: str, orders: list[Order]) -> None:
    produce_records(
        bootstrap,
        topic,
        [(oid.encode(), json.dumps({"id": oid, "customer": c}).encode()) for oid, c in orders],
    )


def _results(bootstrap: str, topic: str) -> list[tuple[str, list[Any]]]:
    return [
        (r.key.decode(), json.loads(r.value)) for r in read_committed(bootstrap, topic)
        if r.key is not None and r.value is not None
    ]  # fmt: skip


def _expected(orders: list[Order], table: dict[str, Any], kind: str) -> list[Any]:
    """The plain-Python join: each order once, with the table's value for its customer."""
    out = [(oid, [oid, table.get(c)]) for oid, c in orders]
    return sorted(out if kind == "left" else [o for o in out if o[1][1] is not None])


def test_a_stream_joins_a_global_table_exactly_once_through_sigkills(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rng = random.Random("global-tables")
    names = app_topics(kafka_bootstrap, "gtab", 2, create_output=False)
    table_topic = unique_name("gtab-customers")
    create_topic(kafka_bootstrap, table_topic, 3)
    for kind in KINDS:
        create_topic(kafka_bootstrap, f"{names.out}-{kind}", 2)
    writes = _customers(rng)
    produce_records(kafka_bootstrap, table_topic, _encode(writes))  # acked: before the stream
    table = {k: v for k, v in dict(writes).items() if v is not None}
    phases = [
        [(f"o{p}-{i}", f"c{rng.randint(0, 44)}") for i in range(150)] for p in range(4)
    ]  # customers c40..c44 never exist
    pauses = [phases[k][75][0] for k in (1, 2, 3)]
    env = {**names.env, "TEST_GLOBAL": table_topic}
    workers, pause_dir = pausing_workers(TARGET, kafka_bootstrap, tmp_path, env, pauses)
    try:
        for k, orders in enumerate(phases):
            _produce_orders(kafka_bootstrap, names.src, orders)
            if k >= 1:
                kill_at_pause(pause_dir, k - 1, workers)  # a SIGKILL mid-transaction
            wait_for(
                lambda: _table_loaded(kafka_bootstrap, names.app_id, names.src)
                or bool(dead(workers)),
                120,
                f"phase {k} committed",
            )
            assert not dead(workers), dead(workers)
        every = [o for orders in phases for o in orders]
        for kind in KINDS:
            got = sorted(_results(kafka_bootstrap, f"{names.out}-{kind}"))
            want = _expected(every, table, kind)
            assert len(got) == len(want), (kind, len(got), len(want))
            assert got == want, kind
        for w in workers.values():
            assert w.terminate() == 0, w.log()[-3000:]
    finally:
        for w in workers.values():
            w.stop_quietly()


def _transaction(
    producer: Producer, topic: str, writes: list[tuple[str, Any]], commit: bool
) -> None:
    producer.begin_transaction()
    for key, raw in _encode(writes):
        producer.produce(topic, key=key, value=raw)
    producer.flush(30)
    if commit:
        producer.commit_transaction(30)
    else:
        producer.abort_transaction(30)


def test_a_global_table_follows_its_topic_and_never_shows_aborted_records(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    names = app_topics(kafka_bootstrap, "gtxn", 2, create_output=False)
    table_topic = unique_name("gtxn-customers")
    create_topic(kafka_bootstrap, table_topic, 3)
    for kind in KINDS:
        create_topic(kafka_bootstrap, f"{names.out}-{kind}", 2)
    writer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": unique_name("gtxn-writer")}
    )
    writer.init_transactions(30)
    _transaction(writer, table_topic, [(f"c{i}", "A") for i in range(5)], commit=True)
    _transaction(writer, table_topic, [(f"c{i}", "B") for i in range(6)], commit=False)
    _transaction(writer, table_topic, [("c6", "C")], commit=True)
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w0", {**names.env, "TEST_GLOBAL": table_topic})
    w.start()
    try:
        orders = [(f"o{i}", f"c{i}") for i in range(7)]
        _produce_orders(kafka_bootstrap, names.src, orders)
        want = {f"o{i}": "A" for i in range(5)} | {"o5": None, "o6": "C"}
        wait_for(
            lambda: len(_results(kafka_bootstrap, f"{names.out}-left")) >= 7 or not w.alive,
            120,
            "the first orders joined",
        )
        assert dict((k, v[1]) for k, v in _results(kafka_bootstrap, f"{names.out}-left")) == want
        # While the worker runs: an aborted update, then a committed one.
        _transaction(writer, table_topic, [("c0", "X"), ("c1", "X")], commit=False)
        _transaction(writer, table_topic, [("c1", "Y")], commit=True)
        n = 0

        def later_order_sees_the_update() -> bool:
            nonlocal n
            n += 1
            _produce_orders(kafka_bootstrap, names.src, [(f"late{n}", "c1"), (f"late{n}-0", "c0")])
            values = dict((k, v[1]) for k, v in _results(kafka_bootstrap, f"{names.out}-left"))
            return any(values.get(f"late{i}") == "Y" for i in range(1, n + 1)) or not w.alive

        wait_for(later_order_sees_the_update, 120, "an order joined with the update", 0.5)
        assert w.alive, w.log()[-3000:]
        results = _results(kafka_bootstrap, f"{names.out}-left")
        seen = [v[1] for _, v in results]
        assert "X" not in seen and "B" not in seen, seen
        values = dict((k, v[1]) for k, v in results)
        assert all(v == "A" for k, v in values.items() if k.endswith("-0"))  # c0's abort unseen
        assert w.terminate() == 0, w.log()[-3000:]
    finally:
        w.stop_quietly()
