"""Sink throughput: every input ``{"id", "amount", "src"}`` into one sink, nothing else.

``BENCH_SINK``: ``pg-two-phase``, ``pg-offsets`` (PostgreSQL, ``BENCH_DSN``, ``BENCH_TABLE``)
or ``files`` (JSON Lines into ``BENCH_DIR``).
"""

from __future__ import annotations

import os

import eokafka
from connectors.files import FileSink
from connectors.postgres import PostgresSink
from eokafka import serdes

app = eokafka.App(os.environ.get("BENCH_APP_ID", "bench-sink"))
IN = os.environ.get("BENCH_INPUT", "bench-in")
KIND = os.environ.get("BENCH_SINK", "pg-two-phase")
if KIND == "files":
    app.sink(FileSink("out", os.environ.get("BENCH_DIR", "bench-out"), roll_seconds=5))
else:
    mode = "two-phase" if KIND == "pg-two-phase" else "offsets-in-database"
    table = os.environ.get("BENCH_TABLE", "bench_rows")
    app.sink(PostgresSink("out", os.environ.get("BENCH_DSN", ""), table, mode=mode))


@app.processor(IN, key_serde=serdes.Bytes(), value_serde=serdes.Json())
def write(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    ctx.sink("out").write(record.value)
