"""Table-table joins on a real broker, with a worker SIGKILLed mid-transaction: every update
of either table gives exactly one update of each joined table, and the joined tables end as
the plain-Python join of the two tables' final contents. tests/apps/table_join_apps.py."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import app_topics, wait_for
from tests.integration.pausing import dead, kill_at_pause, pausing_workers
from tests.integration.test_dsl import _table_loaded
from tests.kafka_helpers import create_topic, produce_records, read_committed, unique_name

pytestmark = pytest.mark.integration
TARGET = "tests.apps.table_join_apps:app"
PARTITIONS = 3
KINDS = ("inner", "left", "outer")


def _updates(rng: random.Random, side: str) -> list[tuple[str, Any]]:
    return [
        (f"k{rng.randint(0, 19)}", None if rng.random() < 0.15 else f"{side}{i}")
        for i in range(300)
    ]


def _produce(bootstrap: str, topic: str, updates: list[tuple[str, Any]]) -> None:
    for p in range(PARTITIONS):
        produce_records(
            bootstrap,
            topic,
            [
                (k.encode(), None if v is None else json.dumps(v).encode())
                for k, v in updates
                if int(k[1:]) % PARTITIONS == p
            ],
            partition=p,
        )


def _expected(left: dict[str, Any], right: dict[str, Any], kind: str) -> dict[str, Any]:
    keys = set(left) | set(right)
    if kind == "inner":
        keys = set(left) & set(right)
    elif kind == "left":
        keys = set(left)
    return {k: [left.get(k), right.get(k)] for k in keys}


def test_table_joins_match_the_join_of_the_final_tables_through_a_sigkill(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rng = random.Random("table-joins")
    lefts, rights = _updates(rng, "l"), _updates(rng, "r")
    names = app_topics(kafka_bootstrap, "tjoin", PARTITIONS, create_output=False)
    right_topic = unique_name("tjoin-in2")
    create_topic(kafka_bootstrap, right_topic, PARTITIONS)
    for kind in KINDS:
        create_topic(kafka_bootstrap, f"{names.out}-{kind}", PARTITIONS)
    pause = next(v for _, v in lefts[150:] if v)
    env = {**names.env, "TEST_INPUT2": right_topic}
    workers, pause_dir = pausing_workers(TARGET, kafka_bootstrap, tmp_path, env, [pause])
    try:
        _produce(kafka_bootstrap, names.src, lefts)
        _produce(kafka_bootstrap, right_topic, rights)
        kill_at_pause(pause_dir, 0, workers)
        topics = (names.src, right_topic)
        wait_for(
            lambda: (
                all(_table_loaded(kafka_bootstrap, names.app_id, t) for t in topics)
                or bool(dead(workers))
            ),
            120,
            "both tables",
        )
        assert not dead(workers), dead(workers)
        final_l = {k: v for k, v in dict(lefts).items() if v is not None}
        final_r = {k: v for k, v in dict(rights).items() if v is not None}
        for kind in KINDS:
            records = read_committed(kafka_bootstrap, f"{names.out}-{kind}")
            # One joined update (or delete) per table update, none twice, none lost.
            assert len(records) == len(lefts) + len(rights), kind
            last: dict[str, Any] = {}
            for r in records:  # a key's updates are in one partition, in order
                assert r.key is not None
                last[r.key.decode()] = None if r.value is None else json.loads(r.value)
            got = {k: v for k, v in last.items() if v is not None}
            assert got == _expected(final_l, final_r, kind), kind
        for w in workers.values():
            assert w.terminate() == 0, w.log()[-3000:]
    finally:
        for w in workers.values():
            w.stop_quietly()
