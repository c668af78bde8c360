"""A zombie PostgreSQL sink: a worker frozen between the steps of its two-phase commit.

The worker stops itself (SIGSTOP, through the sink's fault points, eokafka/faults.py) after
it recorded the partitions of a transaction and before its ``PREPARE TRANSACTION``; a
successor with the same instance id starts, fences it and takes its partitions; then the
zombie is continued (SIGCONT), as after a long GC or VM pause. Whatever the zombie does then,
no prepared transaction of the app may stay (it would hold its row locks, or pin xmin, for
ever), every key must take an upsert at once, and every input must be in the table and the
Kafka output exactly once, checked against the inputs the test wrote.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from tests.integration.connectors.pg_helpers import (
    TARGET,
    assert_rows_exactly_once,
    inputs,
    new_table,
    prepared,
    rows,
)
from tests.integration.harness import WorkerProcess, app_topics, wait_for, worker
from tests.kafka_helpers import produce_records, read_committed

pytestmark = pytest.mark.integration

LIVENESS = 120  # seconds: a generous bound for the successor to get past the zombie


def _frozen(w: WorkerProcess) -> bool:
    assert w.proc is not None
    try:
        stat = Path(f"/proc/{w.proc.pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] == "T"


def _continue(w: WorkerProcess) -> None:
    if w.alive:
        assert w.proc is not None
        os.kill(w.proc.pid, signal.SIGCONT)


def _assert_every_key_takes_an_upsert(dsn: str, table: str, total: int) -> None:
    """An upsert of every key, from outside, gets its locks at once (then is rolled back)."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SET lock_timeout = '5s'")
        conn.execute(
            f"INSERT INTO {table} (id, amount, src) SELECT i, i %% 97, 'check' "
            "FROM generate_series(0, %s) AS i "
            "ON CONFLICT (id) DO UPDATE SET amount = EXCLUDED.amount",
            (total - 1,),
        )
        conn.rollback()


@pytest.mark.parametrize("point", ["postgres.after-control", "postgres.before-prepare"])
@pytest.mark.parametrize("upsert", [True, False], ids=["upsert", "append"])
def test_a_zombie_frozen_before_prepare_leaves_no_prepared_transaction(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path, upsert: bool, point: str
) -> None:
    first, total = 3_000, 4_000
    names = app_topics(kafka_bootstrap, "pgzombie", partitions=2)
    table = new_table(postgres_dsn, key=upsert)
    produce_records(kafka_bootstrap, names.src, inputs(range(first)))
    base = {
        **names.env,
        "TEST_PG_DSN": postgres_dsn,
        "TEST_PG_TABLE": table,
        "TEST_PG_LOCK_TIMEOUT": "2",
        "EOKAFKA_COMMIT_EVERY": "500",
        "EOKAFKA_BATCH_SIZE": "250",
        **({"TEST_PG_KEY": "id"} if upsert else {}),
    }
    flag = tmp_path / "frozen"
    armed = {
        **base,
        "EOKAFKA_TEST_CRASH_AT": f"{point}:3",
        "EOKAFKA_TEST_CRASH_FLAG": str(flag),
        "EOKAFKA_TEST_CRASH_SIGNAL": "STOP",
    }
    zombie = worker(TARGET, kafka_bootstrap, tmp_path, "zombie", armed, ["--instance-id", "a"])
    successor = worker(TARGET, kafka_bootstrap, tmp_path, "next", base, ["--instance-id", "a"])
    app = names.app_id

    def left() -> list[str]:
        return [g for g in prepared(postgres_dsn) if app in g]

    zombie.start()
    try:
        wait_for(lambda: flag.exists() and _frozen(zombie), 120, "the zombie to freeze")
        successor.start()
        wait_for(lambda: "assigned" in successor.log(), 120, "the successor's assignment")
        _continue(zombie)
        zombie.wait(LIVENESS)  # fenced by the successor: it stops rather than fence it back
        produce_records(kafka_bootstrap, names.src, inputs(range(first, total)))
        wait_for(lambda: len(rows(postgres_dsn, table)) >= total, LIVENESS, "every row")
        wait_for(lambda: not left(), LIVENESS, f"no prepared transaction of the app: {left()}")
        if point == "postgres.before-prepare":  # it did prepare, after the successor started
            assert re.search(rf"rolling back prepared transaction {app}:a:\d+:3 ", successor.log())
        if upsert:
            _assert_every_key_takes_an_upsert(postgres_dsn, table, total)
        assert_rows_exactly_once(postgres_dsn, table, range(total))
        out = read_committed(kafka_bootstrap, names.out, expected_count=total, timeout=120)
        ids = Counter(json.loads(r.value)["id"] for r in out)
        assert sorted(ids) == list(range(total)) and set(ids.values()) == {1}
        assert successor.terminate() == 0, successor.log()[-3000:]
        assert not left()
    finally:
        _continue(zombie)
        zombie.stop_quietly()
        successor.stop_quietly()
