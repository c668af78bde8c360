"""The PostgreSQL sink under SIGKILL at every step of its commit, and a PostgreSQL restart.

Kills between steps come from the sink's fault points (eokafka/faults.py), armed through
the environment of a real worker process, which SIGKILLs itself there once; the test then
restarts it (or, for a worker gone for good, lets another instance take over). Every input
must be in the table exactly once with its exact value, in the Kafka output exactly once,
and no prepared transaction may be left holding row locks.
"""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from tests.integration.connectors.pg_helpers import (
    TARGET,
    assert_kafka_output,
    assert_rows_exactly_once,
    assert_verified,
    copies_of,
    inputs,
    new_table,
    prepared,
    rows,
    run_until,
)
from tests.integration.harness import app_topics, wait_for, worker
from tests.kafka_helpers import produce_records

pytestmark = pytest.mark.integration


def _setup(bootstrap: str, dsn: str, tmp: Path, total: int, **env: str) -> tuple[dict, str, str]:
    names = app_topics(bootstrap, "pgchaos", partitions=2)
    table = new_table(dsn)
    produce_records(bootstrap, names.src, inputs(range(total)))
    full = {
        **names.env,
        "TEST_PG_DSN": dsn,
        "TEST_PG_TABLE": table,
        "EOKAFKA_TEST_CRASH_FLAG": str(tmp / "crashed"),
        "EOKAFKA_COMMIT_EVERY": "500",  # many transactions, so kills land mid-run
        "EOKAFKA_BATCH_SIZE": "250",
        **env,
    }
    return full, table, names.out


@pytest.mark.parametrize(
    "point", ["postgres.mid-batch", "postgres.after-prepare", "postgres.before-commit-prepared"]
)
def test_sigkill_at_each_step_of_the_two_phase_commit(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path, point: str
) -> None:
    total = 6_000
    env, table, out = _setup(
        kafka_bootstrap, postgres_dsn, tmp_path, total, EOKAFKA_TEST_CRASH_AT=f"{point}:3"
    )
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, ["--instance-id", "a"]).start()
    try:
        restarts = run_until(w, lambda: len(rows(postgres_dsn, table)) >= total, 180)
        assert restarts == 1 and (tmp_path / "crashed").exists(), "the crash point never fired"
        assert_rows_exactly_once(postgres_dsn, table, range(total))
        assert_verified(kafka_bootstrap, env["TEST_INPUT"], f"postgres:{table}", postgres_dsn)
        assert_kafka_output(kafka_bootstrap, out, copies_of(kafka_bootstrap, env["TEST_INPUT"]))
        assert w.terminate() == 0, w.log()[-3000:]
        assert not [g for g in prepared(postgres_dsn) if env["TEST_APP_ID"] in g]
    finally:
        w.stop_quietly()


def test_worker_killed_for_good_after_prepare_is_resolved_by_the_next_owner(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
) -> None:
    total = 4_000
    env, table, out = _setup(
        kafka_bootstrap,
        postgres_dsn,
        tmp_path,
        total,
        EOKAFKA_TEST_CRASH_AT="postgres.after-prepare:2",
    )
    gone = worker(TARGET, kafka_bootstrap, tmp_path, "gone", env, ["--instance-id", "gone"])
    heir_env = {k: v for k, v in env.items() if k != "EOKAFKA_TEST_CRASH_AT"}
    heir = worker(TARGET, kafka_bootstrap, tmp_path, "heir", heir_env, ["--instance-id", "heir"])
    gone.start()
    try:
        gone.wait(120)  # died between PREPARE TRANSACTION and the Kafka commit
        app = env["TEST_APP_ID"]
        left = [g for g in prepared(postgres_dsn) if app in g]
        assert len(left) == 1, left
        heir.start()  # joins once the dead member's session times out, then takes over
        wait_for(lambda: len(rows(postgres_dsn, table)) >= total, 240, "the heir's rows")
        assert_rows_exactly_once(postgres_dsn, table, range(total))
        assert_verified(kafka_bootstrap, env["TEST_INPUT"], f"postgres:{table}", postgres_dsn)
        assert_kafka_output(kafka_bootstrap, out, copies_of(kafka_bootstrap, env["TEST_INPUT"]))
        assert not [g for g in prepared(postgres_dsn) if app in g]
        with psycopg.connect(postgres_dsn) as conn:  # no row is still locked
            conn.execute("SET lock_timeout = '2s'")
            conn.execute(f"SELECT * FROM {table} FOR UPDATE NOWAIT").fetchall()
        assert heir.terminate() == 0, heir.log()[-3000:]
    finally:
        gone.stop_quietly()
        heir.stop_quietly()


def test_postgres_restarted_during_a_run(
    kafka_bootstrap: str, postgres_server: object, postgres_dsn: str, tmp_path: Path
) -> None:
    total = 20_000
    first = 8_000
    env, table, out = _setup(kafka_bootstrap, postgres_dsn, tmp_path, first)
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, ["--instance-id", "a"]).start()
    names_src = env["TEST_INPUT"]
    feeder = threading.Thread(
        target=produce_records, args=(kafka_bootstrap, names_src, inputs(range(first, total)))
    )
    try:
        wait_for(lambda: len(rows(postgres_dsn, table)) > 1_000, 120, "first rows")
        feeder.start()
        for _ in range(2):
            postgres_server.restart("immediate")  # type: ignore[attr-defined]
        feeder.join(120)
        wait_for(lambda: len(rows(postgres_dsn, table)) >= total, 240, "all rows")
        assert w.alive, w.log()[-3000:]
        assert_rows_exactly_once(postgres_dsn, table, range(total))
        assert_verified(kafka_bootstrap, env["TEST_INPUT"], f"postgres:{table}", postgres_dsn)
        assert_kafka_output(kafka_bootstrap, out, copies_of(kafka_bootstrap, env["TEST_INPUT"]))
        assert not [g for g in prepared(postgres_dsn) if env["TEST_APP_ID"] in g]
        assert w.terminate() == 0, w.log()[-3000:]
    finally:
        w.stop_quietly()


def test_a_stale_workers_prepared_transaction_does_not_block_the_owner(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
) -> None:
    """A worker that stalled, lost its partitions, then prepared: its rows stay locked.

    The owner's upsert on such a row waits ``lock_timeout``, aborts, and the abort's
    recovery rolls the stale transaction back (Kafka never committed it); the replay goes on.
    """
    from connectors.postgres.sink import _CONTROL_DDL

    names = app_topics(kafka_bootstrap, "pgstale", partitions=1)
    table = new_table(postgres_dsn, key=True)
    env = {**names.env, "TEST_PG_DSN": postgres_dsn, "TEST_PG_TABLE": table,
           "TEST_PG_KEY": "id", "TEST_PG_LOCK_TIMEOUT": "2"}
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, ["--instance-id", "a"]).start()
    stale = psycopg.connect(postgres_dsn)
    gid = f"eok:{names.app_id}:stale:1:1:pg"
    try:
        wait_for(lambda: "assigned" in w.log(), 120, "the assignment")
        with psycopg.connect(postgres_dsn, autocommit=True) as control:  # as the sink does
            control.execute(_CONTROL_DDL)
            control.execute(
                "INSERT INTO eokafka_sink_prepared VALUES (%s, %s, 'stale', %s, 0, 999)",
                (gid, names.app_id, names.src),
            )
        stale.execute(f"INSERT INTO {table} VALUES (5, 0, 'stale')")
        stale.execute(f"PREPARE TRANSACTION '{gid}'")
        produce_records(kafka_bootstrap, names.src, inputs(range(100)))
        wait_for(lambda: len(rows(postgres_dsn, table)) >= 100, 120, "all rows")
        assert_rows_exactly_once(postgres_dsn, table, range(100))
        assert gid not in prepared(postgres_dsn)
        assert f"rolling back prepared transaction {gid[4:-3]}" in w.log(), w.log()[-3000:]
        assert w.terminate() == 0, w.log()[-3000:]
    finally:
        stale.close()
        w.stop_quietly()


def test_two_workers_share_the_partitions_and_one_is_killed_after_prepare(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
) -> None:
    """Two workers, a rebalance, and one killed with a prepared transaction: the other and
    its restart agree on it (rolled back, as Kafka never committed it)."""
    total = 12_000
    names = app_topics(kafka_bootstrap, "pgtwo", partitions=4)
    table = new_table(postgres_dsn)
    base = {**names.env, "TEST_PG_DSN": postgres_dsn, "TEST_PG_TABLE": table,
            "EOKAFKA_COMMIT_EVERY": "500", "EOKAFKA_BATCH_SIZE": "250"}
    armed = {**base, "EOKAFKA_TEST_CRASH_AT": "postgres.after-prepare:4",
             "EOKAFKA_TEST_CRASH_FLAG": str(tmp_path / "crashed")}
    w0 = worker(TARGET, kafka_bootstrap, tmp_path, "w0", armed, ["--instance-id", "w0"]).start()
    w1 = worker(TARGET, kafka_bootstrap, tmp_path, "w1", base, ["--instance-id", "w1"])
    feeder = threading.Thread(
        target=produce_records, args=(kafka_bootstrap, names.src, inputs(range(total)))
    )
    try:
        wait_for(lambda: "assigned" in w0.log(), 120, "w0's assignment")
        w1.start()  # a rebalance: w0 gives up two partitions
        wait_for(lambda: "assigned" in w1.log(), 120, "w1's assignment")
        feeder.start()
        restarts = run_until(w0, lambda: len(rows(postgres_dsn, table)) >= total, 240)
        assert restarts == 1 and (tmp_path / "crashed").exists(), "the crash point never fired"
        feeder.join(60)
        assert "rolling back prepared transaction" in w0.log() + w1.log()
        assert_rows_exactly_once(postgres_dsn, table, range(total))
        assert_verified(kafka_bootstrap, names.src, f"postgres:{table}", postgres_dsn)
        assert_kafka_output(kafka_bootstrap, names.out, copies_of(kafka_bootstrap, names.src))
        for w in (w0, w1):
            assert w.terminate() == 0, w.log()[-3000:]
        assert not [g for g in prepared(postgres_dsn) if names.app_id in g]
    finally:
        w0.stop_quietly()
        w1.stop_quietly()
