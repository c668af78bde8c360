"""Copies ``{"id": n}`` to ``{"id": n, "pid": <worker pid>}`` so a reader can tell which
worker process committed each output record (restart_latency.py needs old from new).
"""

from __future__ import annotations

import os

import eokafka
from eokafka import serdes

app = eokafka.App(os.environ.get("BENCH_APP_ID", "bench-stamp"))
IN = os.environ.get("BENCH_INPUT", "bench-stamp-in")
OUT = os.environ.get("BENCH_OUTPUT", "bench-stamp-out")
JSON = serdes.Json()
PID = os.getpid()  # the worker process: with processes=1 the app is imported in it


@app.processor(IN, key_serde=serdes.Bytes(), value_serde=JSON)
def stamp(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    ctx.send(OUT, key=record.key, value={"id": record.value["id"], "pid": PID}, value_serde=JSON)
