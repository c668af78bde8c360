"""Test app: each input ``{"id": n, "amount": a}`` becomes a PostgreSQL row and a Kafka record.

Driven by environment variables: ``TEST_PG_DSN``, ``TEST_PG_TABLE``, ``TEST_PG_MODE``
(two-phase | offsets-in-database), ``TEST_PG_KEY`` (upsert key columns, comma separated;
append without), ``TEST_PG_LOCK_TIMEOUT`` (seconds), ``TEST_OUTPUT`` (a Kafka topic to copy
to as well; none in offsets-in-database mode).
"""

from __future__ import annotations

import os

import eokafka
from connectors.postgres import PostgresSink
from eokafka import serdes

app = eokafka.App(os.environ.get("TEST_APP_ID", "pg-sink"))
INPUT = os.environ.get("TEST_INPUT", "pg-in")
OUTPUT = os.environ.get("TEST_OUTPUT", "")
sink = app.sink(
    PostgresSink(
        "pg",
        os.environ.get("TEST_PG_DSN", ""),
        os.environ.get("TEST_PG_TABLE", "pg_sink"),
        columns={"id": "id", "amount": "amount", "src": lambda v: v["src"]},
        key=[k for k in os.environ.get("TEST_PG_KEY", "").split(",") if k],
        mode=os.environ.get("TEST_PG_MODE", "two-phase"),  # type: ignore[arg-type]
        reconnect_timeout=120,
        lock_timeout=float(os.environ.get("TEST_PG_LOCK_TIMEOUT", "10")),
    )
)


@app.processor(INPUT, key_serde=serdes.String(), value_serde=serdes.Json())
def copy(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    value = dict(record.value, src=f"{record.partition}:{record.offset}")
    ctx.sink("pg").write(value)
    if OUTPUT:
        ctx.send(OUTPUT, key=record.key, value=value, value_serde=serdes.Json())
