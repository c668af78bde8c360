"""Shared pieces of the PostgreSQL sink tests: tables, inputs, the app's environment."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import psycopg

TARGET = "tests.apps.pg_sink:app"


def new_table(dsn: str, key: bool = False) -> str:
    """A fresh table ``(id bigint, amount integer, src text)``, with a primary key if asked."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pk = " PRIMARY KEY" if key else ""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id bigint{pk}, amount integer NOT NULL, src text)")
    return name


def inputs(ids: range, **extra: Any) -> list[tuple[bytes, bytes]]:
    return [
        (str(n).encode(), json.dumps({"id": n, "amount": n % 97, **extra}).encode()) for n in ids
    ]


def rows(dsn: str, table: str) -> list[tuple[int, int]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT id, amount FROM {table}").fetchall()


def prepared(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT gid FROM pg_prepared_xacts").fetchall()]


def assert_rows_exactly_once(dsn: str, table: str, ids: range) -> None:
    got = rows(dsn, table)
    counts = Counter(i for i, _ in got)
    dupes = [i for i, c in counts.items() if c > 1]
    missing = [i for i in ids if i not in counts]
    wrong = [(i, a) for i, a in got if a != i % 97]
    assert not dupes, f"{len(dupes)} ids duplicated in {table}, e.g. {dupes[:5]}"
    assert not missing, f"{len(missing)} ids missing from {table}, e.g. {missing[:5]}"
    assert not wrong, f"wrong amounts, e.g. {wrong[:5]}"
    assert len(got) == len(ids)


def run_until(
    w: Any, done: Any, timeout: float, restarts: int = 3, what: str = "the sink to catch up"
) -> int:
    """Wait for ``done()``, restarting ``w`` each time it dies (a crash point fired)."""
    import time

    deadline = time.monotonic() + timeout
    started = 0
    while not done():
        if not w.alive:
            assert started < restarts, f"worker died {started + 1} times:\n{w.log()[-4000:]}"
            w.start()
            started += 1
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{w.log()[-4000:]}"
        time.sleep(0.1)  # poll interval
    return started


def assert_verified(bootstrap: str, source: str, destination: str, dsn: str | None = None) -> None:
    """``eokafka verify``: every input at the destination exactly once, amounts exact."""
    from eokafka.verify import verify

    report = verify(bootstrap, source, destination, fields=["amount"], dsn=dsn, open_wait=30)
    assert report.ok, report.summary()
