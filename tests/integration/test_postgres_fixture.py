"""The test PostgreSQL: two-phase commit enabled, and it survives a restart mid-test."""

from __future__ import annotations

import psycopg
import pytest

pytestmark = pytest.mark.integration


def test_server_allows_prepared_transactions_and_restarts(
    postgres_server: object, postgres_dsn: str
) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        assert conn.execute("SHOW max_prepared_transactions").fetchone() == ("64",)
        conn.execute("CREATE TABLE IF NOT EXISTS fixture_probe (n int)")
        conn.execute("INSERT INTO fixture_probe VALUES (1)")
    postgres_server.restart()  # type: ignore[attr-defined]
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM fixture_probe").fetchone()[0] >= 1
        conn.execute("DROP TABLE fixture_probe")
