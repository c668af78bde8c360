"""One store fed by two topics: a count per key over both, emitted for every input.

``TEST_APP_ID``, ``TEST_INPUT``, ``TEST_OUTPUT`` as in eos_copy.py, ``TEST_INPUT2`` for the
second input topic (co-partitioned with the first), ``TEST_BACKEND`` for the store.
"""

from __future__ import annotations

import os

import eokafka
from eokafka import serdes

INPUT = os.environ.get("TEST_INPUT", "multi-in")
INPUT2 = os.environ.get("TEST_INPUT2", "multi-in2")
OUTPUT = os.environ.get("TEST_OUTPUT", "multi-out")

app = eokafka.App(os.environ.get("TEST_APP_ID", "multi"))
app.store("totals", backend=os.environ.get("TEST_BACKEND", "memory"))  # type: ignore[arg-type]


@app.processor(
    INPUT, INPUT2, key_serde=serdes.String(), value_serde=serdes.Json(), stores=["totals"]
)
def count(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    totals = ctx.store("totals")
    running = totals.get(record.key, 0) + record.value["amount"]
    totals.put(record.key, running)
    ctx.send(
        OUTPUT,
        key=record.key,
        value={"id": record.value["id"], "total": running},
        value_serde=serdes.Json(),
    )
