"""Shared pieces of the connector tests: tables, inputs, the app's environment, and the
reference for their Kafka outputs."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Collection
from typing import Any

import psycopg

from tests.kafka_helpers import read_committed

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


def copies_of(
    bootstrap: str, source: str, left_out: Collection[int] = ()
) -> list[tuple[bytes | None, Any]]:
    """What the copy apps (tests/apps/pg_sink.py, file_sink.py) must send to Kafka for the
    records of ``source``: each input but those of ids ``left_out``, under its key, its value
    with its position added as ``src``."""
    out = []
    for r in read_committed(bootstrap, source):
        value = json.loads(r.value)
        if value["id"] not in left_out:
            out.append((r.key, dict(value, src=f"{r.partition}:{r.offset}")))
    return out


def assert_kafka_output(bootstrap: str, topic: str, want: list[tuple[bytes | None, Any]]) -> None:
    """``topic`` holds, committed, exactly the records ``want`` (key, JSON value), each once."""
    got = read_committed(bootstrap, topic, expected_count=len(want), timeout=120)
    expected = Counter((k, json.dumps(v, sort_keys=True)) for k, v in want)
    found = Counter((r.key, json.dumps(json.loads(r.value), sort_keys=True)) for r in got)
    missing, extra = expected - found, found - expected
    assert not missing and not extra, (
        f"{topic}: {sum(missing.values())} expected records missing, e.g. {list(missing)[:3]}; "
        f"{sum(extra.values())} unexpected or repeated, e.g. {list(extra)[:3]}"
    )
