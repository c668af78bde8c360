"""Running totals per key in a store: restore.py checks a restored store through it.

Input ``{"amount": n}`` keyed by a string; the store ``totals`` maps that key to a JSON
object whose ``total`` grows by ``amount`` (other fields are kept); each input emits
``{"key": key, "total": new_total}``. Topic names, the application id and the store
backend come from the environment (``BENCH_BACKEND``: memory, sqlite or rocksdb), and
``BENCH_STANDBYS`` sets ``num_standby_replicas`` (rebalance.py; App gets it only when set).
"""

from __future__ import annotations

import os
from typing import Any

import eokafka
from eokafka import serdes

STANDBYS = os.environ.get("BENCH_STANDBYS")
app = eokafka.App(
    os.environ.get("BENCH_APP_ID", "bench-totals"),
    **({} if STANDBYS is None else {"num_standby_replicas": int(STANDBYS)}),
)
IN = os.environ.get("BENCH_INPUT", "bench-totals-in")
OUT = os.environ.get("BENCH_OUTPUT", "bench-totals-out")
BACKEND: Any = os.environ.get("BENCH_BACKEND", "memory")
JSON = serdes.Json()

app.store("totals", backend=BACKEND)


@app.processor(IN, key_serde=serdes.String(), value_serde=JSON, stores=["totals"])
def add(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    store = ctx.store("totals")
    state = store.get(record.key, None) or {"total": 0}
    state = {**state, "total": state["total"] + record.value["amount"]}
    store.put(record.key, state)
    out = {"key": record.key, "total": state["total"]}
    ctx.send(OUT, key=record.key, value=out, value_serde=JSON)
