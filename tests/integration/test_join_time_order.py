"""A join task reads its input partitions in timestamp order, whatever order they are fetched
in (Kafka Streams' PartitionGroup; runtime/tasks/ordering.py).

Both topics are written in full before the worker starts: a backlog. The right topic's
records are padded to ~1 KB and the left's are small, so one fetch brings all of the left
partition and a quarter of the right: read in fetch order, the left's
stream time runs tens of seconds ahead and a 1 s grace drops most right records as late.
Read in timestamp order, nothing is late: every left record joins its right partner. The
worker is SIGKILLed once while records wait in its queues, and a second run goes on from the
committed offsets: queued records were not committed, so none is lost or joined twice.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.apps.ordered_join_app import WINDOW
from tests.integration.harness import app_topics, wait_for, worker
from tests.joins_reference import Arrival, expected_join
from tests.kafka_helpers import (
    create_topic,
    end_offsets,
    produce_records,
    read_committed,
    unique_name,
)

pytestmark = pytest.mark.integration
TARGET = "tests.apps.ordered_join_app:app"
PARTITIONS = 2
PER_PARTITION = 4000
KEYS_PER_PARTITION = 7
STEP_MS = 10  # event time between two records of a partition
PAD = "x" * 1000


def _arrivals(base: int) -> list[Arrival]:
    """Left i and right i share a key and are 3 ms apart: each pair joins, nothing else
    does (same-key records are 70 ms apart, the window is +-50 ms)."""
    out: list[Arrival] = []
    for p in range(PARTITIONS):
        for i in range(PER_PARTITION):
            key = f"p{p}-k{i % KEYS_PER_PARTITION}"
            ts = base + i * STEP_MS
            out.append(("L", key, {"i": i}, ts))
            out.append(("R", key, {"i": i, "pad": PAD}, ts + 3))
    return out


def _partition(key: str) -> int:
    return int(key[1 : key.index("-")])


def _committed_results(bootstrap: str, topic: str) -> int:
    return sum(end_offsets(bootstrap, topic, "committed").values())


@pytest.mark.parametrize("idle", ["0", "-1"])
def test_a_backlog_joins_in_timestamp_order_through_a_sigkill(
    kafka_bootstrap: str, tmp_path: Path, idle: str
) -> None:
    """``idle`` -1 turns the order off: then right records are dropped as late (the test
    shows it can fail); the default 0 joins every pair exactly once."""
    base = int(time.time() * 1000) - 3_600_000
    arrivals = _arrivals(base)
    names = app_topics(kafka_bootstrap, "ojoin", PARTITIONS)
    right = unique_name("ojoin-in2")
    create_topic(kafka_bootstrap, right, PARTITIONS)
    for side, topic in (("L", names.src), ("R", right)):
        for p in range(PARTITIONS):
            mine = [a for a in arrivals if a[0] == side and _partition(a[1]) == p]
            produce_records(
                kafka_bootstrap,
                topic,
                [(k.encode(), json.dumps(v).encode()) for _, k, v, _ in mine],
                partition=p,
                timestamps=[ts for *_, ts in mine],
            )
    env = {**names.env, "TEST_INPUT2": right, "EOKAFKA_MAX_TASK_IDLE_MS": idle}
    args = ["--until-end"]
    first = worker(TARGET, kafka_bootstrap, tmp_path, "first", env, args).start()
    second = worker(TARGET, kafka_bootstrap, tmp_path, "second", env, args)
    try:
        wait_for(
            lambda: _committed_results(kafka_bootstrap, names.out) > 0 or not first.alive,
            120,
            "the first committed results",
            interval=0.01,
        )
        if idle == "0":
            assert first.alive, "the first run ended before the kill: it tests no restart"
        first.stop_quietly()  # SIGKILL
        second.start()
        assert second.wait(180) == 0, second.log()[-3000:]
    finally:
        first.stop_quietly()
        second.stop_quietly()

    got = [
        (r.key.decode(), json.loads(r.value), r.timestamp)
        for r in read_committed(kafka_bootstrap, names.out)
    ]
    twice = [r for r, n in Counter(map(repr, got)).items() if n > 1]
    assert not twice, f"{len(twice)} results more than once, e.g. {twice[:2]}"
    in_order = sorted(arrivals, key=lambda a: (a[3], a[0]))
    want = expected_join(in_order, WINDOW, "inner", lambda lv, rv: [lv, rv], _partition)
    assert len(want) == PARTITIONS * PER_PARTITION
    short = [(k, v[0]["i"], ts) for k, v, ts in want]  # the pads make reprs long
    missing = Counter(map(repr, short)) - Counter(repr((k, v[0]["i"], ts)) for k, v, ts in got)
    unexpected = Counter(map(repr, got)) - Counter(map(repr, want))
    if idle == "-1":
        assert missing, "fetch order joined everything: the input does not test the order"
        return
    assert not missing and not unexpected, (
        f"{sum(missing.values())} missing (e.g. {list(missing)[:1]}), "
        f"{sum(unexpected.values())} unexpected"
    )
    committed = sum(end_offsets(kafka_bootstrap, names.out, "committed").values())
    uncommitted = sum(end_offsets(kafka_bootstrap, names.out, "uncommitted").values())
    assert committed == uncommitted, "an open transaction is left after the run"
