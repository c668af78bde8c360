"""The PostgreSQL sink on a real broker and a real PostgreSQL, run by real worker processes."""

from __future__ import annotations

import json
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
from tests.kafka_helpers import produce_records, read_committed

pytestmark = pytest.mark.integration


def test_two_phase_rows_and_kafka_output_exactly_once(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
) -> None:
    total = 5_000
    names = app_topics(kafka_bootstrap, "pg2pc", partitions=2)
    table = new_table(postgres_dsn)
    env = {**names.env, "TEST_PG_DSN": postgres_dsn, "TEST_PG_TABLE": table}
    produce_records(kafka_bootstrap, names.src, inputs(range(total)))
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, ["--instance-id", "a"]).start()
    try:
        wait_for(lambda: len(rows(postgres_dsn, table)) >= total, 120, "all rows")
        assert_rows_exactly_once(postgres_dsn, table, range(total))
        assert_kafka_output(kafka_bootstrap, names.out, copies_of(kafka_bootstrap, names.src))
        assert w.terminate() == 0, w.log()[-3000:]
        assert not [g for g in prepared(postgres_dsn) if names.app_id in g]
    finally:
        w.stop_quietly()


def test_a_row_that_does_not_fit_is_dead_lettered_with_its_record(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
) -> None:
    total = 1_000
    names = app_topics(kafka_bootstrap, "pgpoison", partitions=1)
    table = new_table(postgres_dsn)
    env = {**names.env, "TEST_PG_DSN": postgres_dsn, "TEST_PG_TABLE": table}
    records = inputs(range(total))
    records[500] = (b"500", json.dumps({"id": 500, "amount": "lots"}).encode())
    produce_records(kafka_bootstrap, names.src, records)
    extra = ["--instance-id", "a", "--on-error", "dead-letter", "--create-topics"]
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, extra).start()
    try:
        wait_for(lambda: len(rows(postgres_dsn, table)) >= total - 1, 120, "the other rows")
        dlq = read_committed(kafka_bootstrap, f"{names.app_id}-dlq", expected_count=1)
        got = rows(postgres_dsn, table)
        assert sorted(i for i, _ in got) == [i for i in range(total) if i != 500]
        assert len(dlq) == 1 and dlq[0].key == b"500"
        headers = {k: v for k, v in dlq[0].headers}
        assert headers["eokafka.error.class"] == b"RowError"
        assert b"amount (integer) can't take 'lots'" in headers["eokafka.error.message"]
        assert headers["eokafka.source.offset"] == b"500"
        want = copies_of(kafka_bootstrap, names.src, left_out={500})
        assert_kafka_output(kafka_bootstrap, names.out, want)
        assert w.terminate() == 0, w.log()[-3000:]
    finally:
        w.stop_quietly()


def test_offsets_in_the_database_survive_a_kill_after_the_database_commit(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
) -> None:
    total = 6_000
    names = app_topics(kafka_bootstrap, "pgoffs", partitions=2, create_output=False)
    table = new_table(postgres_dsn)
    env = {
        "TEST_APP_ID": names.app_id,
        "TEST_INPUT": names.src,
        "TEST_PG_DSN": postgres_dsn,
        "TEST_PG_TABLE": table,
        "TEST_PG_MODE": "offsets-in-database",
        "EOKAFKA_TEST_CRASH_AT": "postgres.after-commit:3",
        "EOKAFKA_TEST_CRASH_FLAG": str(tmp_path / "crashed"),
        "EOKAFKA_COMMIT_EVERY": "500",
        "EOKAFKA_BATCH_SIZE": "250",
    }
    produce_records(kafka_bootstrap, names.src, inputs(range(total)))
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, ["--instance-id", "a"]).start()
    try:
        restarts = run_until(w, lambda: len(rows(postgres_dsn, table)) >= total, 180)
        assert restarts == 1 and (tmp_path / "crashed").exists(), "the crash point never fired"
        assert_rows_exactly_once(postgres_dsn, table, range(total))
        assert_verified(kafka_bootstrap, names.src, f"postgres:{table}", postgres_dsn)
        with psycopg.connect(postgres_dsn) as conn:
            stored = conn.execute(
                "SELECT sum(next_offset) FROM eokafka_offsets WHERE group_id = %s",
                (names.app_id,),
            ).fetchone()
        assert stored == (total,)
        assert w.terminate() == 0, w.log()[-3000:]
    finally:
        w.stop_quietly()


def test_offsets_in_the_database_refuse_kafka_output_in_the_same_transaction(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
) -> None:
    names = app_topics(kafka_bootstrap, "pgoffsout", partitions=1)
    table = new_table(postgres_dsn)
    env = {**names.env, "TEST_PG_DSN": postgres_dsn, "TEST_PG_TABLE": table,
           "TEST_PG_MODE": "offsets-in-database"}
    produce_records(kafka_bootstrap, names.src, inputs(range(10)))
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, ["--instance-id", "a"]).start()
    try:
        assert w.wait(120) == 1
        assert "keeps the offsets in its database, but the transaction also writes to Kafka" \
            in w.log(), w.log()[-3000:]
        assert rows(postgres_dsn, table) == []
    finally:
        w.stop_quietly()
