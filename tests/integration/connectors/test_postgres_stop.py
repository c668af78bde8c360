"""PostgreSQL connectors close cleanly from any state: a worker stopped before it was assigned.

The worker's first rebalance is held open from outside: another member of its group is
inside its revoke callback and doesn't rejoin, so the coordinator can't complete the join
(it waits up to that member's max.poll.interval.ms). The worker is SIGTERMed then, before
any partition was assigned and so before its sink was ever opened.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer

from connectors.postgres import PostgresSink, PostgresSource
from tests.integration.connectors.pg_helpers import TARGET, new_table
from tests.integration.harness import app_topics, wait_for, worker

pytestmark = pytest.mark.integration


@contextmanager
def held_rebalance(bootstrap: str, group: str, topic: str) -> Iterator[threading.Event]:
    """A member of ``group`` that, once assigned, stalls the next rebalance in its revoke.

    Yields an event that is set when a rebalance (another member's join) is being held.
    """
    holding, release, assigned = threading.Event(), threading.Event(), threading.Event()
    stop = threading.Event()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "partition.assignment.strategy": "range",  # the worker's (eager) assignor
            "max.poll.interval.ms": 300_000,  # how long the coordinator waits for it
            "enable.auto.commit": False,
        }
    )

    def on_assign(_: Any, partitions: list[Any]) -> None:
        assigned.set()

    def on_revoke(_: Any, partitions: list[Any]) -> None:
        if assigned.is_set() and not stop.is_set():
            holding.set()
            release.wait(300)  # the rebalance stays open while this member doesn't rejoin

    def run() -> None:
        while not stop.is_set():
            consumer.poll(0.1)

    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_for(assigned.is_set, 60, "the holding member's assignment")
        yield holding
    finally:
        stop.set()
        release.set()
        thread.join(30)
        consumer.close()


def test_a_worker_stopped_before_its_first_assignment_exits_cleanly(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
) -> None:
    names = app_topics(kafka_bootstrap, "pgstop", partitions=2)
    table = new_table(postgres_dsn)
    env = {**names.env, "TEST_PG_DSN": postgres_dsn, "TEST_PG_TABLE": table}
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, ["--instance-id", "a"])
    try:
        with held_rebalance(kafka_bootstrap, names.app_id, names.src) as holding:
            w.start()
            wait_for(holding.is_set, 120, "the worker's join to start a rebalance")
            wait_for(lambda: "worker running" in w.log(), 120, "the worker's start")
            code = w.terminate(60)
            log = w.log()
            assert "assigned" not in log, log[-3000:]
        assert code == 0, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        assert "worker stopped (clean)" in log, log[-3000:]
    finally:
        w.stop_quietly()


STATES = ["never opened", "opened", "rows buffered", "prepared", "connection lost"]


@pytest.mark.parametrize("state", STATES)
def test_postgres_connectors_close_from_any_state(postgres_dsn: str, state: str) -> None:
    """Sink and source close without error whatever they were doing (a real PostgreSQL)."""
    table = new_table(postgres_dsn)
    outbox = new_table(postgres_dsn)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            f"ALTER TABLE {outbox} ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id()"
        )
        conn.execute(f"INSERT INTO {outbox} VALUES (1, 1, 'x')")
    app, txn = f"close-{table}", f"close-{table}:a:1:1"
    sink = PostgresSink("pg", postgres_dsn, table)
    source = PostgresSource("outbox", postgres_dsn, outbox)
    if state != "never opened":
        sink.open(app, "a")
        source.open(app)
        source.seek(None)
    if state not in ("never opened", "opened"):
        sink.add(("t", 0, 0), sink.row({"id": 1, "amount": 1, "src": "t"}))
        assert source.poll(10)[0]
    prepared = state in ("prepared", "connection lost")
    if prepared:
        sink.prepare(txn, {("t", 0): 1})  # not yet finished: the Kafka commit decides it
    if state == "connection lost":
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                "application_name IN ('eokafka sink pg', 'eokafka sink pg control', "
                "'eokafka source outbox')"
            )
    sink.close()
    source.close()
    sink.close()  # twice is no error either
    if prepared:  # still there for recovery to find, then resolved
        sink = PostgresSink("pg", postgres_dsn, table)
        sink.open(app, "a")
        assert sink.in_doubt(set(), "a") == {txn: {("t", 0)}}
        sink.resolve(txn, commit=False)
        sink.close()
