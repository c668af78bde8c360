"""The PostgreSQL outbox source: rows committed out of id order, and a SIGKILL mid-transaction.

A transaction that takes low ids and commits after one with higher ids was read must not be
skipped (the source reads by transaction snapshot, not by id); every row must reach Kafka
exactly once, as the table holds it.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from connectors.postgres import PostgresSource
from eokafka.errors import ConfigError
from tests.integration.connectors.pg_helpers import assert_kafka_output
from tests.integration.harness import worker
from tests.kafka_helpers import create_topic, read_committed, unique_name

pytestmark = pytest.mark.integration


def _outbox(dsn: str) -> str:
    table = unique_name("outbox").replace("-", "_")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id bigserial PRIMARY KEY, amount integer NOT NULL, "
            "txid xid8 NOT NULL DEFAULT pg_current_xact_id())"
        )
    return table


def _insert(conn: psycopg.Connection, table: str, n: int) -> None:
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} (amount) VALUES (%s)", [(i % 97,) for i in range(n)])


def test_rows_committed_out_of_id_order_arrive_exactly_once(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
) -> None:
    table = _outbox(postgres_dsn)
    app_id, out = unique_name("pgsrc"), unique_name("pgsrc-out")
    create_topic(kafka_bootstrap, out, 3)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        _insert(conn, table, 3000)
    env = {
        "TEST_APP_ID": app_id,
        "TEST_PG_DSN": postgres_dsn,
        "TEST_PG_TABLE": table,
        "TEST_OUTPUT": out,
        "EOKAFKA_TEST_CRASH_AT": "postgres-source.poll:5",  # 2 commits, then 500 rows open
        "EOKAFKA_TEST_CRASH_FLAG": str(tmp_path / "crashed"),
        "EOKAFKA_BATCH_SIZE": "500",
        "EOKAFKA_COMMIT_EVERY": "1000",
        "EOKAFKA_COMMIT_INTERVAL_MS": "300",
    }
    w = worker("tests.apps.pg_source:app", kafka_bootstrap, tmp_path, "w", env,
               ["--instance-id", "a"]).start()
    slow = psycopg.connect(postgres_dsn)
    try:
        assert w.wait(120) == -9, w.log()[-3000:]  # SIGKILLed at the crash point
        w.start()
        read_committed(kafka_bootstrap, out, expected_count=3000, timeout=120)
        _insert(slow, table, 200)  # ids 3001..3200, open while higher ids commit
        with psycopg.connect(postgres_dsn, autocommit=True) as fast:
            _insert(fast, table, 300)  # ids 3201..3500
        seen = read_committed(kafka_bootstrap, out, expected_count=3300, timeout=120)
        assert max(json.loads(r.value)["id"] for r in seen) == 3500
        slow.commit()  # the lower ids commit last
        with psycopg.connect(postgres_dsn) as conn:
            table_rows = conn.execute(f"SELECT id, amount FROM {table}").fetchall()
        assert [i for i, _ in sorted(table_rows)] == list(range(1, 3501))
        want = [(str(i).encode(), {"id": i, "amount": a}) for i, a in table_rows]
        assert_kafka_output(kafka_bootstrap, out, want)
        assert w.terminate() == 0, w.log()[-3000:]
    finally:
        slow.close()
        w.stop_quietly()


def test_a_table_without_a_transaction_id_column_is_refused(postgres_dsn: str) -> None:
    table = unique_name("plain").replace("-", "_")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigserial, amount int)")
    with pytest.raises(ConfigError, match="ADD COLUMN txid xid8"):
        PostgresSource("s", postgres_dsn, table).open("app")
