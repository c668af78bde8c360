"""Exactly-once copy of one topic to another, bytes untouched: eokafka's pure overhead.

Topic names and the application id come from the environment so each benchmark run gets
fresh topics and a fresh consumer group without editing code.
"""

from __future__ import annotations

import os

import eokafka
from eokafka import serdes

app = eokafka.App(os.environ.get("BENCH_APP_ID", "bench-passthrough"))
IN = os.environ.get("BENCH_INPUT", "bench-in")
OUT = os.environ.get("BENCH_OUTPUT", "bench-out")


@app.processor(IN, key_serde=serdes.Bytes(), value_serde=serdes.Bytes())
def passthrough(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    ctx.send(OUT, key=record.key, value=record.value)
