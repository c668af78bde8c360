"""Exactly-once copy of one topic to another: eokafka's overhead on a passthrough.

``BENCH_VALUES=json`` (the benchmarks' default) parses every value with ``serdes.Json`` and
writes it back, as a realistic app reading and writing JSON does; ``BENCH_VALUES=bytes``
copies the bytes untouched. Topic names and the application id come from the environment
too, so each benchmark run gets fresh topics and a fresh consumer group without editing code.
"""

from __future__ import annotations

import os

import eokafka
from eokafka import serdes

app = eokafka.App(os.environ.get("BENCH_APP_ID", "bench-passthrough"))
IN = os.environ.get("BENCH_INPUT", "bench-in")
OUT = os.environ.get("BENCH_OUTPUT", "bench-out")
JSON = os.environ.get("BENCH_VALUES", "json") == "json"
VALUES = serdes.Json() if JSON else serdes.Bytes()
SEND_SERDE = VALUES if JSON else None  # bytes go to ctx.send as they are


@app.processor(IN, key_serde=serdes.Bytes(), value_serde=VALUES)
def passthrough(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    ctx.send(OUT, key=record.key, value=record.value, value_serde=SEND_SERDE)
