"""A store fed by two co-partitioned input topics: a count per key over both.

TEST_INPUT and TEST_INPUT2 carry ``{"id": n}`` records keyed alike (same partition count, so
key k lands on partition p of both); each input emits ``{"id": n, "count": c}``. Per key the
emitted counts are exactly 1..n whatever the interleaving, iff every input counted once.
"""

from __future__ import annotations

import os

import eokafka
from eokafka import serdes
from tests.apps.eos_copy import INPUT, OUTPUT

INPUT2 = os.environ.get("TEST_INPUT2", "copart-in2")
app = eokafka.App(os.environ.get("TEST_APP_ID", "copartitioned"))
app.store("counts")


@app.processor(
    INPUT, INPUT2, key_serde=serdes.String(), value_serde=serdes.Json(), stores=["counts"]
)
def count(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    counts = ctx.store("counts")
    n = counts.get(record.key, 0) + 1
    counts.put(record.key, n)
    value = {"id": record.value["id"], "count": n}
    ctx.send(OUTPUT, key=record.key, value=value, value_serde=serdes.Json())
