"""The DSL's ``to_sink``: the payments example (two sinks, a store) killed after PREPARE."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import psycopg
import pytest

from tests.integration.connectors.pg_helpers import assert_verified, prepared, run_until
from tests.integration.harness import worker
from tests.kafka_helpers import create_topic, produce_records, read_committed, unique_name

pytestmark = pytest.mark.integration


def test_running_totals_in_postgres_are_exact_after_kills(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
) -> None:
    app_id, payments, totals = (unique_name(p) for p in ("pay", "pay-in", "pay-totals"))
    table, ledger = (unique_name(p).replace("-", "_") for p in ("totals", "ledger"))
    create_topic(kafka_bootstrap, payments, 3)
    create_topic(kafka_bootstrap, totals, 3)
    env = {
        "PAYMENTS_APP_ID": app_id,
        "PAYMENTS_TOPIC": payments,
        "TOTALS_TOPIC": totals,
        "PAYMENTS_TABLE": table,
        "PAYMENTS_LEDGER": ledger,
        "PAYMENTS_DSN": postgres_dsn,
        "EOKAFKA_TEST_CRASH_AT": "postgres.after-prepare:4",
        "EOKAFKA_TEST_CRASH_FLAG": str(tmp_path / "crashed"),
        "EOKAFKA_COMMIT_EVERY": "300",
        "EOKAFKA_BATCH_SIZE": "100",
    }
    from examples.payments import TABLES_DDL

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        for ddl in TABLES_DDL:
            conn.execute(ddl.replace("account_totals", table).replace("payment_ledger", ledger))
    rng = random.Random(3)
    expected: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    records = []
    for n in range(3_000):
        account, amount = f"acct-{rng.randrange(25)}", rng.randrange(1, 500)
        expected[account][0] += amount
        expected[account][1] += 1
        records.append((account.encode(), json.dumps({"id": n, "amount": amount}).encode()))
    produce_records(kafka_bootstrap, payments, records)

    def table_total() -> list[tuple[str, int, int]]:
        with psycopg.connect(postgres_dsn) as conn:
            return conn.execute(f"SELECT account, total, payments FROM {table}").fetchall()

    w = worker("examples.payments:app", kafka_bootstrap, tmp_path, "w", env,
               ["--instance-id", "a"]).start()
    try:
        restarts = run_until(
            w, lambda: sum(r[2] for r in table_total()) >= 3_000, 180, what="all payments"
        )
        assert restarts == 1 and (tmp_path / "crashed").exists(), "the crash point never fired"
        assert {a: [t, n] for a, t, n in table_total()} == dict(expected)
        assert_verified(kafka_bootstrap, payments, f"postgres:{ledger}", postgres_dsn)
        latest = {}
        for r in read_committed(kafka_bootstrap, totals):
            latest[r.key.decode()] = json.loads(r.value)
        assert {a: [v["total"], v["payments"]] for a, v in latest.items()} == dict(expected)
        assert w.terminate() == 0, w.log()[-3000:]
        assert not [g for g in prepared(postgres_dsn) if app_id in g]
    finally:
        w.stop_quietly()
