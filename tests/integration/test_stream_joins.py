"""Windowed stream-stream joins on a real broker, with real workers SIGKILLed mid-transaction:
each join kind against the plain-Python reference (tests/joins_reference.py) on out-of-order
data with late records. Exact results, no duplicates, no spurious unmatched results.

Lateness depends on how a worker interleaves the two topics, which no test controls; the
input is built so that it cannot matter. It comes in phases of ``PHASE_MS`` of event time,
each produced once the app has committed the one before; a phase ends with a marker at its
last millisecond on every partition. A record of the phase is never late (grace >= a
phase), and the late records it carries are older than the previous marker by more than
their window and grace, so they are late whatever the interleaving.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.apps.join_apps import WINDOW
from tests.integration.harness import app_topics, wait_for
from tests.integration.pausing import dead, kill_at_pause, pausing_workers
from tests.integration.test_dsl import _table_loaded
from tests.joins_reference import Arrival, JoinKind, expected_join
from tests.kafka_helpers import (
    create_topic,
    end_offsets,
    produce_records,
    read_committed,
    unique_name,
)

pytestmark = pytest.mark.integration
TARGET = "tests.apps.join_apps:app"
PARTITIONS = 3
PHASE_MS = 1000
PHASES = 5
KEYS = 12
KINDS: tuple[JoinKind, ...] = ("inner", "left", "outer")


def _partition(key: str) -> int:
    return int(key[3:].split("-")[1]) if key.startswith("~m") else int(key[1:]) % PARTITIONS


def _phases(rng: random.Random, base: int) -> list[list[Arrival]]:
    """Per phase, the records of both sides (in the order they are produced), markers last."""
    assert WINDOW.grace_ms >= PHASE_MS
    late_by = max(WINDOW.before_ms, WINDOW.after) + WINDOW.grace_ms + 2
    phases = []
    for k in range(PHASES + 1):
        start = base + k * PHASE_MS
        records: list[Arrival] = []
        for side in "LR":
            for i in range(40 if k < PHASES else 0):
                if k >= 2 and rng.random() < 0.08:
                    ts = start - late_by - rng.randint(0, 1000)  # before the last marker
                else:
                    ts = start + rng.randint(0, PHASE_MS - 1)
                records.append((side, f"k{rng.randint(0, KEYS - 1)}", f"{side}{k}-{i}", ts))
        end = start + PHASE_MS - 1 if k < PHASES else start + WINDOW.expire_after_ms + PHASE_MS
        records += [("L", f"~m{k}-{p}", f"M{k}-{p}", end) for p in range(PARTITIONS)]
        phases.append(records)
    return phases


def _produce(bootstrap: str, topics: dict[str, str], records: list[Arrival]) -> None:
    for side, topic in topics.items():
        for p in range(PARTITIONS):
            mine = [r for r in records if r[0] == side and _partition(r[1]) == p]
            produce_records(
                bootstrap,
                topic,
                [(key.encode(), json.dumps(value).encode()) for _, key, value, _ in mine],
                partition=p,
                timestamps=[ts for *_, ts in mine],
            )


def _committed(bootstrap: str, group: str, topics: dict[str, str]) -> bool:
    return all(_table_loaded(bootstrap, group, topic) for topic in topics.values())


def test_each_join_kind_matches_the_reference_through_sigkills(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """One app joins the two streams three ways (tests/apps/join_apps.py)."""
    rng = random.Random("stream-joins")
    base = (int(time.time() * 1000) // PHASE_MS - 3600) * PHASE_MS  # within retention
    phases = _phases(rng, base)
    names = app_topics(kafka_bootstrap, "sjoin", PARTITIONS, create_output=False)
    right = unique_name("sjoin-in2")
    create_topic(kafka_bootstrap, right, PARTITIONS)
    for kind in KINDS:
        create_topic(kafka_bootstrap, f"{names.out}-{kind}", PARTITIONS)
    topics = {"L": names.src, "R": right}
    # One pause (and SIGKILL) mid-transaction in each of phases 1..3.
    pauses = [next(v for s, _, v, _ in phases[k] if s == "L") for k in (1, 2, 3)]
    env = {**names.env, "TEST_INPUT2": right}
    workers, pause_dir = pausing_workers(TARGET, kafka_bootstrap, tmp_path, env, pauses)
    try:
        for k, records in enumerate(phases):
            _produce(kafka_bootstrap, topics, records)
            if 1 <= k <= 3:
                kill_at_pause(pause_dir, k - 1, workers)
            wait_for(
                lambda: _committed(kafka_bootstrap, names.app_id, topics) or dead(workers),
                120,
                f"phase {k}",
            )
            assert not dead(workers), dead(workers)
        arrivals = [r for records in phases for r in records]
        for kind in KINDS:
            _check(kafka_bootstrap, f"{names.out}-{kind}", arrivals, kind)
        for w in workers.values():
            assert w.terminate() == 0, w.log()[-3000:]
    finally:
        for w in workers.values():
            w.stop_quietly()


def _check(bootstrap: str, topic: str, arrivals: list[Arrival], kind: JoinKind) -> None:
    """Exactly the reference's results, each once, and no transaction left open."""
    got = [
        (r.key.decode(), json.loads(r.value), r.timestamp)
        for r in read_committed(bootstrap, topic)
        if r.key is not None and r.value is not None
    ]
    twice = [r for r, n in Counter(map(repr, got)).items() if n > 1]
    assert not twice, f"{kind}: {len(twice)} results more than once, e.g. {twice[:3]}"
    want = expected_join(arrivals, WINDOW, kind, lambda lv, rv: [lv, rv], _partition)
    assert sorted(map(repr, got)) == sorted(map(repr, want)), f"{kind}: {_diff(got, want)}"
    assert any(None in v for _, v, _ in want) == (kind != "inner")
    committed = sum(end_offsets(bootstrap, topic, "committed").values())
    uncommitted = sum(end_offsets(bootstrap, topic, "uncommitted").values())
    assert committed == uncommitted, f"{kind}: an open transaction is left after the run"


def _diff(got: list[Any], want: list[Any]) -> str:
    g, w = Counter(map(repr, got)), Counter(map(repr, want))
    return f"missing {list((w - g).elements())[:4]}, unexpected {list((g - w).elements())[:4]}"
