"""Clear errors from the PostgreSQL sink: settings, tables, columns, and rows that don't fit."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from connectors.postgres import PostgresSink, RowError
from eokafka.errors import ConfigError
from eokafka.sink import RecordRefused
from tests.integration.connectors.pg_helpers import (
    TARGET,
    assert_kafka_output,
    copies_of,
    inputs,
    new_table,
    rows,
)
from tests.integration.harness import app_topics, wait_for, worker
from tests.kafka_helpers import produce_records, read_committed

pytestmark = pytest.mark.integration


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


@pytest.mark.parametrize("policy", ["dead-letter", "fail"])
def test_a_row_postgres_refuses_goes_to_the_poison_policy_naming_its_record(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path, policy: str
) -> None:
    """A CHECK constraint the write-time checks don't know refuses records 13, 110 and 207
    (amount 13) at prepare time, each in a different transaction of one partition."""
    total, bad = 300, [13, 110, 207]
    names = app_topics(kafka_bootstrap, "pgcheck", partitions=1)
    table = new_table(postgres_dsn)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT no_13 CHECK (amount <> 13)")
    env = {**names.env, "TEST_PG_DSN": postgres_dsn, "TEST_PG_TABLE": table,
           "EOKAFKA_COMMIT_EVERY": "50", "EOKAFKA_BATCH_SIZE": "25"}
    produce_records(kafka_bootstrap, names.src, inputs(range(total)))
    extra = ["--instance-id", "a", "--on-error", policy, "--create-topics"]
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, extra).start()
    try:
        if policy == "fail":
            assert w.wait(120) == 1, w.log()[-3000:]
            log = w.log()
            assert f"poison record at {names.src}[0]@13 (sink): CheckViolation" in log, log[-3000:]
            assert "no_13" in log
            assert log.count("poison record at") == 1
            assert all(i < 13 for i, _ in rows(postgres_dsn, table))
            return
        good = [i for i in range(total) if i not in bad]
        wait_for(
            lambda: not w.alive or len(rows(postgres_dsn, table)) >= len(good), 120, "good rows"
        )
        assert w.alive, w.log()[-3000:]
        dlq = read_committed(kafka_bootstrap, f"{names.app_id}-dlq", expected_count=len(bad))
        assert sorted(int(r.key) for r in dlq) == bad
        for record in dlq:
            headers = dict(record.headers)
            assert headers["eokafka.error.stage"] == b"sink"
            assert headers["eokafka.error.class"] == b"CheckViolation"
            assert b"no_13" in headers["eokafka.error.message"]
            assert headers["eokafka.source.topic"] == names.src.encode()
            assert headers["eokafka.source.partition"] == b"0"
            assert headers["eokafka.source.offset"] == record.key
        counts = Counter(i for i, _ in rows(postgres_dsn, table))
        assert sorted(counts) == good and set(counts.values()) == {1}
        want = copies_of(kafka_bootstrap, names.src, left_out=set(bad))
        assert_kafka_output(kafka_bootstrap, names.out, want)
        assert w.terminate() == 0, w.log()[-3000:]
        assert w.log().count("aborting to replay without that record") == len(bad)  # no loop
    finally:
        w.stop_quietly()



@pytest.mark.parametrize(
    ("mode", "key"),
    [("two-phase", ()), ("two-phase", ("id",)), ("offsets-in-database", ())],
)
def test_the_first_row_postgres_refuses_is_named_and_the_rest_can_be_written(
    postgres_dsn: str, mode: str, key: tuple[str, ...]
) -> None:
    """Record 3 breaks a CHECK, record 5 another; when appending, record 6 repeats record
    1's unique id. The sink names the first of them and rolls back, each time; without
    them the batch goes in."""
    table = new_table(postgres_dsn, key=bool(key))
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT no_13 CHECK (amount <> 13)")
        conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT no_bad CHECK (src <> 'bad')")
        if not key:
            conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT one_id UNIQUE (id)")
    values = {o: {"id": o, "amount": 1, "src": str(o)} for o in range(8)}
    values[3]["amount"] = 13
    values[5]["src"] = "bad"
    faults = [3, 5]
    if not key:
        values[6]["id"] = 1
        faults.append(6)
    sink = _open(postgres_dsn, table, key=key, mode=mode)
    try:
        for n in range(len(faults) + 1):
            for o, v in values.items():
                if o not in faults[:n]:
                    sink.add(("in", 0, o), sink.row(v))
            if n == len(faults):
                sink.prepare(f"app:i:1:{n}", {("in", 0): 8})
                sink.finish()
                break
            with pytest.raises(RecordRefused) as refused:
                sink.prepare(f"app:i:1:{n}", {("in", 0): 8})
            assert refused.value.record == ("in", 0, faults[n])
            assert f"in[0]@{faults[n]}" in str(refused.value)
            assert rows(postgres_dsn, table) == []
            sink.abort()
        good = [o for o in values if o not in faults]
        assert sorted(i for i, _ in rows(postgres_dsn, table)) == good
    finally:
        sink.close()
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {table}")
