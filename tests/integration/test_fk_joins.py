"""Foreign-key table-table joins on a real broker: orders (3 partitions) join customers (2
partitions) by the customer their value names, run by two workers that are SIGKILLed
mid-transaction three times, while updates with foreign-key changes and deletes on both
sides flow. At quiescence the last committed output per order is the plain-Python join of
the final tables (tests/joins_reference.py), and every order update subscribed and
unsubscribed exactly once. tests/apps/fk_join_apps.py."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import app_topics, wait_for
from tests.integration.pausing import dead, kill_at_pause, pausing_workers
from tests.integration.test_dsl import _table_loaded
from tests.joins_reference import expected_fk_join
from tests.kafka_helpers import create_topic, produce_records, read_committed, unique_name

pytestmark = pytest.mark.integration
TARGET = "tests.apps.fk_join_apps:app"
ORDERS, CUSTOMERS = 3, 2  # partition counts: the tables are not co-partitioned
KINDS = {"inner": "inner", "left": "left"}
Update = tuple[str, Any]


def _orders(rng: random.Random, start: int, count: int) -> list[Update]:
    updates: list[Update] = []
    for i in range(start, start + count):
        customer = None if rng.random() < 0.1 else f"c{rng.randint(0, 9)}"
        value = None if rng.random() < 0.15 else {"id": f"o-{i}", "customer": customer}
        updates.append((f"o{rng.randint(0, 29)}", value))
    return updates


def _customers(rng: random.Random, start: int, count: int) -> list[Update]:
    return [
        (f"c{rng.randint(0, 9)}", None if rng.random() < 0.2 else f"name-{i}")
        for i in range(start, start + count)
    ]


def _produce(bootstrap: str, topic: str, updates: list[Update]) -> None:
    records = [(k.encode(), None if v is None else json.dumps(v).encode()) for k, v in updates]
    produce_records(bootstrap, topic, records)  # murmur2 partitions, as a Java producer's


def _final(updates: list[Update]) -> dict[str, Any]:
    return {k: v for k, v in dict(updates).items() if v is not None}


def _last(bootstrap: str, topic: str) -> dict[str, Any]:
    last: dict[str, Any] = {}
    for r in read_committed(bootstrap, topic):  # a key's updates are in one partition, in order
        assert r.key is not None
        last[r.key.decode()] = None if r.value is None else json.loads(r.value)
    return {k: v for k, v in last.items() if v is not None}


def _subscriptions(orders: list[Update]) -> Counter[tuple[str, str, bool]]:
    """What the order updates must subscribe (True) and unsubscribe (False), each once:
    (foreign key, order key, subscribe)."""
    want: Counter[tuple[str, str, bool]] = Counter()
    subscribed: dict[str, str] = {}
    for key, value in orders:
        fk = None if value is None else value["customer"]
        old = subscribed.pop(key, None)
        if old is not None and old != fk:
            want[(old, key, False)] += 1
        if fk is not None:
            subscribed[key] = fk
            want[(fk, key, True)] += 1
    return want


def test_foreign_key_joins_match_the_join_of_the_final_tables_through_sigkills(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rng = random.Random("fk-joins")
    rounds = [(_orders(rng, n * 200, 200), _customers(rng, n * 60, 60)) for n in range(3)]
    names = app_topics(kafka_bootstrap, "fkjoin", ORDERS, create_output=False)
    customers = unique_name("fkjoin-in2")
    create_topic(kafka_bootstrap, customers, CUSTOMERS)
    for kind in KINDS:
        create_topic(kafka_bootstrap, f"{names.out}-{kind}", ORDERS)
    # Kills while an order's subscription is open, a customer's fan-out, an order's again.
    pauses = [
        next(v["id"] for _, v in rounds[0][0][100:] if v),
        next(v for _, v in rounds[1][1][30:] if v),
        next(v["id"] for _, v in rounds[2][0][100:] if v),
    ]
    # No purge of committed subscription records: the test counts them at the end.
    env = {**names.env, "TEST_INPUT2": customers, "EOKAFKA_PURGE_INTERVAL_MS": "3600000"}
    workers, pause_dir = pausing_workers(TARGET, kafka_bootstrap, tmp_path, env, pauses)
    try:
        for n, (orders, custs) in enumerate(rounds):
            _produce(kafka_bootstrap, customers, custs[:30])
            _produce(kafka_bootstrap, names.src, orders)
            _produce(kafka_bootstrap, customers, custs[30:])
            kill_at_pause(pause_dir, n, workers)
        all_orders = [u for orders, _ in rounds for u in orders]
        left = _final(all_orders)
        right = _final([u for _, custs in rounds for u in custs])

        def fk(order: dict[str, Any]) -> Any:
            return order["customer"]

        def joiner(order: dict[str, Any], customer: Any) -> list[Any]:
            return [order["id"], customer]

        want = {kind: expected_fk_join(left, right, fk, joiner, ref) for kind, ref in KINDS.items()}

        def quiet() -> bool:
            if dead(workers):
                return True
            topics = (names.src, customers)
            if not all(_table_loaded(kafka_bootstrap, names.app_id, t) for t in topics):
                return False
            return all(_last(kafka_bootstrap, f"{names.out}-{k}") == want[k] for k in KINDS)

        wait_for(quiet, 240, "the joined tables to match the reference", interval=1.0)
        assert not dead(workers), dead(workers)
        for kind in KINDS:
            topic = f"{names.app_id}-fk-{kind}-subscription-repartition"
            got: Counter[tuple[str, str, bool]] = Counter()
            for r in read_committed(kafka_bootstrap, topic):
                assert r.key is not None and r.value is not None
                key, digest = json.loads(r.value)
                got[(r.key.decode(), key, digest is not None)] += 1
            assert got == _subscriptions(all_orders), kind
        for w in workers.values():
            assert w.terminate() == 0, w.log()[-3000:]
        for kind in KINDS:  # what was in flight at the match changed nothing
            assert _last(kafka_bootstrap, f"{names.out}-{kind}") == want[kind], kind
    finally:
        for w in workers.values():
            w.stop_quietly()
