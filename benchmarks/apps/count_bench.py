"""Exactly-once count by key: every input emits its key's new count.

The value is never parsed (Bytes serde), so the difference to the passthrough app is the
store: one get and one put per record plus the changelog writes at each commit. Topic names,
the application id and the store backend (``BENCH_BACKEND``, default memory) come from the
environment.
"""

from __future__ import annotations

import os
from typing import Any

import eokafka
from eokafka import serdes

app = eokafka.App(os.environ.get("BENCH_APP_ID", "bench-count"))
IN = os.environ.get("BENCH_INPUT", "bench-count-in")
OUT = os.environ.get("BENCH_OUTPUT", "bench-count-out")
BACKEND: Any = os.environ.get("BENCH_BACKEND", "memory")

app.store("counts", backend=BACKEND)


@app.processor(IN, key_serde=serdes.String(), value_serde=serdes.Bytes(), stores=["counts"])
def count(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    store = ctx.store("counts")
    n = store.get(record.key, 0) + 1
    store.put(record.key, n)
    ctx.send(OUT, key=record.key, value=str(n))  # str: UTF-8, the JSON text of the count
