"""Clear errors from the PostgreSQL sink: settings, tables, columns, and rows that don't fit."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from connectors.postgres import PostgresSink, RowError
from eokafka.errors import ConfigError
from tests.integration.connectors.pg_helpers import new_table


def _open(dsn: str, table: str, **kw: object) -> PostgresSink:
    sink = PostgresSink("s", dsn, table, **kw)  # type: ignore[arg-type]
    sink.open("app", "i")
    return sink


def test_missing_table_and_column_are_named(postgres_dsn: str) -> None:
    with pytest.raises(ConfigError, match="table 'no_such_table' does not exist"):
        _open(postgres_dsn, "no_such_table")
    table = new_table(postgres_dsn)
    with pytest.raises(ConfigError, match=f"{table!r} has no column 'nope'"):
        _open(postgres_dsn, table, columns=["id", "nope"])
    with pytest.raises(ConfigError, match="upsert key column 'src'"):
        _open(postgres_dsn, table, columns=["id", "amount"], key=["src"])


def test_rows_that_do_not_fit_are_refused_at_write_time(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE fit_check (n integer NOT NULL, s varchar(3), at timestamptz, "
            "doc jsonb, flag boolean, made timestamptz DEFAULT now())"
        )
    try:
        sink = _open(postgres_dsn, "fit_check")
        assert sink.rows is not None and "made" not in sink.rows.names
        ok = sink.row({"n": 1, "s": "abc", "at": "2026-01-02T03:04:05+00:00", "doc": {"a": 1},
                       "flag": True})
        assert ok[0] == 1 and ok[2] == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        for bad, match in [
            ({"n": "1"}, r"fit_check.n \(integer\) can't take '1'"),
            ({"n": 2**40}, r"fit_check.n \(integer\)"),
            ({"n": True}, r"fit_check.n"),
            ({}, "fit_check.n is NOT NULL"),
            ({"n": 1, "s": "abcd"}, r"fit_check.s \(character varying\(3\)\)"),
            ({"n": 1, "at": "yesterday"}, "fit_check.at"),
            ({"n": 1, "flag": "yes"}, "fit_check.flag"),
        ]:
            with pytest.raises(RowError, match=match):
                sink.row(bad)
        sink.close()
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE fit_check")


def test_two_phase_refuses_a_server_without_prepared_transactions() -> None:
    from tests.postgres import LocalPostgres

    server = LocalPostgres(prepared=0)
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id bigint)")
        with pytest.raises(ConfigError, match="max_prepared_transactions = 0"):
            _open(server.dsn, "t")
        _open(server.dsn, "t", mode="offsets-in-database").close()  # needs no 2PC
    finally:
        server.close()
