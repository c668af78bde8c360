"""The time-aligned stream-table join on a real broker, with real workers SIGKILLed
mid-transaction: the same results, those of the plain-Python as-of reference, whichever
topic was produced first. tests/apps/asof_apps.py is the app.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import app_topics, wait_for, worker
from tests.integration.pausing import dead, kill_at_pause, pausing_workers
from tests.integration.test_dsl import _table_loaded
from tests.integration.test_timers import _written
from tests.kafka_helpers import (
    create_topic,
    end_offsets,
    produce_records,
    read_committed,
    unique_name,
)

pytestmark = pytest.mark.integration
TARGET = "tests.apps.asof_apps:app"
PARTITIONS = 3
Rec = tuple[str, Any, int]  # key, value, timestamp


def _partition(key: str) -> int:
    return int(key[2:]) if key.startswith("~e") else int(key[1:]) % PARTITIONS


def _inputs(rng: random.Random, base: int) -> tuple[list[Rec], list[Rec]]:
    """Table updates in time order (and a last one per partition past every stream record),
    and stream records out of order."""
    table = sorted(
        ((f"k{rng.randint(0, 11)}", rng.choice([None, *(f"t{i}" for i in range(60))]),
          base + rng.randint(0, 5000)) for _ in range(120)),
        key=lambda r: r[2],
    )  # fmt: skip
    table += [(f"~e{p}", "end", base + 6000) for p in range(PARTITIONS)]
    stream = [(f"k{rng.randint(0, 11)}", f"s{i}", base + rng.randint(0, 5000)) for i in range(200)]
    return table, stream


def _as_of(table: list[Rec], key: str, ts: int) -> Any:
    value = None
    for k, v, t in table:
        if k == key and t <= ts:
            value = v
    return value


def _produce(bootstrap: str, topic: str, records: list[Rec]) -> None:
    for p in range(PARTITIONS):
        mine = [r for r in records if _partition(r[0]) == p]
        produce_records(
            bootstrap,
            topic,
            [(k.encode(), None if v is None else json.dumps(v).encode()) for k, v, _ in mine],
            partition=p,
            timestamps=[t for *_, t in mine],
        )


@pytest.mark.parametrize("table_first", [True, False], ids=["table-first", "stream-first"])
def test_the_same_results_whichever_topic_comes_first(
    kafka_bootstrap: str, tmp_path: Path, table_first: bool
) -> None:
    rng = random.Random(11)  # the same input in both cases
    base = (int(time.time() * 1000) // 1000 - 3600) * 1000
    table, stream = _inputs(rng, base)
    names = app_topics(kafka_bootstrap, "asof", PARTITIONS)
    table_topic = unique_name("asof-table")
    create_topic(kafka_bootstrap, table_topic, PARTITIONS)
    # A SIGKILL mid-transaction in each phase: in the second, one that holds results.
    first, second = (table, stream) if table_first else (stream, table)
    pauses = [next(v for _, v, _ in half[len(half) // 2 :] if v) for half in (first, second)]
    env = {**names.env, "TEST_INPUT2": table_topic}
    workers, pause_dir = pausing_workers(TARGET, kafka_bootstrap, tmp_path, env, pauses)
    topics = [names.src, table_topic]
    try:
        phases = [(table_topic, table), (names.src, stream)]
        for n, (topic, records) in enumerate(phases if table_first else phases[::-1]):
            _produce(kafka_bootstrap, topic, records)
            kill_at_pause(pause_dir, n, workers)
            wait_for(
                lambda: (
                    all(_table_loaded(kafka_bootstrap, names.app_id, t) for t in topics)
                    or bool(dead(workers))
                ),
                120,
                f"phase {n}",
            )
            assert not dead(workers), dead(workers)
            if n == 0 and not table_first:
                assert read_committed(kafka_bootstrap, names.out) == []  # all wait
        got = [
            (r.key.decode(), json.loads(r.value), r.timestamp)
            for r in read_committed(kafka_bootstrap, names.out)
            if r.key is not None and r.value is not None
        ]
        want = [(k, [v, _as_of(table, k, t)], t) for k, v, t in stream]
        g, w = Counter(map(repr, got)), Counter(map(repr, want))
        assert g == w, (
            f"missing {list((w - g).elements())[:4]}, extra {list((g - w).elements())[:4]}"
        )
        committed = sum(end_offsets(kafka_bootstrap, names.out, "committed").values())
        assert committed == sum(end_offsets(kafka_bootstrap, names.out, "uncommitted").values())
        for w_ in workers.values():
            assert w_.terminate() == 0, w_.log()[-3000:]
    finally:
        for w_ in workers.values():
            w_.stop_quietly()


def test_waiting_records_of_a_quiet_partition_are_released_by_wall_clock_exactly_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Every stream record is later than the table's last update, so each waits; no record
    comes after them, so only the wall clock (``release_on_idle_ms``) releases them. The
    worker is SIGKILLed at the first released result it writes, and again after its restart."""
    rng = random.Random(5)
    base = (int(time.time() * 1000) // 1000 - 3600) * 1000
    table = sorted(
        ((f"k{rng.randint(0, 11)}", f"t{i}", base + rng.randint(0, 5000)) for i in range(60)),
        key=lambda r: r[2],
    )
    stream = [
        (f"k{rng.randint(0, 11)}", f"s{i}", base + rng.randint(6000, 9000)) for i in range(90)
    ]
    names = app_topics(kafka_bootstrap, "asof-idle", PARTITIONS)
    table_topic = unique_name("asof-idle-table")
    create_topic(kafka_bootstrap, table_topic, PARTITIONS)
    env = {**names.env, "TEST_INPUT2": table_topic, "TEST_MAX_WAIT_MS": "2000",
           "TEST_RELEASE_IDLE_MS": "1000"}  # fmt: skip
    w = worker(TARGET, kafka_bootstrap, tmp_path, "asof-idle", env, ["--instance-id", "w"])
    try:
        w.start()
        _produce(kafka_bootstrap, table_topic, table)
        wait_for(lambda: _table_loaded(kafka_bootstrap, names.app_id, table_topic), 120, "table")
        _produce(kafka_bootstrap, names.src, stream)
        want = [(k, [v, _as_of(table, k, t)], t) for k, v, t in stream]

        def got() -> list[Rec]:
            return [
                (r.key.decode(), json.loads(r.value), r.timestamp)
                for r in read_committed(kafka_bootstrap, names.out)
            ]

        # SIGKILL at the first released result written, and again after the restart unless
        # the first release was committed whole before the kill (then nothing is left).
        mark = 0
        for _ in range(2):
            wait_for(lambda at=mark: _written(kafka_bootstrap, names.out) > at or not w.alive,
                     120, "a released result (a liveness bound)", 0.05)  # fmt: skip
            assert w.alive, w.log()[-3000:]
            w.kill()
            mark = _written(kafka_bootstrap, names.out)
            w.start()
            if len(got()) >= len(want):
                break
        wait_for(lambda: len(got()) >= len(want) or not w.alive, 120,
                 "every result (a liveness bound)", 0.3)  # fmt: skip
        assert w.terminate() == 0, w.log()[-3000:]
    finally:
        w.stop_quietly()
    g, w_ = Counter(map(repr, got())), Counter(map(repr, want))
    assert g == w_, (
        f"missing {list((w_ - g).elements())[:4]}, extra {list((g - w_).elements())[:4]}"
    )
