"""Exactly-once count by key: every input emits its key's new count.

The key is the record key (a String). ``BENCH_VALUES=json`` (the benchmarks' default) parses
each value with ``serdes.Json`` and writes the count through it, as a realistic JSON app
does; ``BENCH_VALUES=bytes`` leaves the value unparsed, so the difference to the passthrough
app is the store alone: one get and one put per record plus the changelog writes at each
commit. Topic names, the application id and the store backend (``BENCH_BACKEND``, default
memory) come from the environment.
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
JSON = os.environ.get("BENCH_VALUES", "json") == "json"
VALUES = serdes.Json() if JSON else serdes.Bytes()
OUT_VALUES = VALUES if JSON else None  # either way the JSON text of the count

app.store("counts", backend=BACKEND)


@app.processor(IN, key_serde=serdes.String(), value_serde=VALUES, stores=["counts"])
def count(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    store = ctx.store("counts")
    n = store.get(record.key, 0) + 1
    store.put(record.key, n)
    ctx.send(OUT, key=record.key, value=n if JSON else str(n), value_serde=OUT_VALUES)
