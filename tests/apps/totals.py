"""Stateful test topology: a running total per key, emitted for every input.

Same environment variables as eos_copy.py, plus TEST_BACKEND (memory, sqlite, rocksdb) and
TEST_STANDBYS (``num_standby_replicas``, given to App only when set).
"""

from __future__ import annotations

import os

import eokafka
from eokafka import serdes
from tests.apps.eos_copy import INPUT, OUTPUT, PAUSE_IDS, _pause_once

STANDBYS = os.environ.get("TEST_STANDBYS")
app = eokafka.App(
    os.environ.get("TEST_APP_ID", "totals"),
    **({} if STANDBYS is None else {"num_standby_replicas": int(STANDBYS)}),
)
app.store("totals", backend=os.environ.get("TEST_BACKEND", "memory"))  # type: ignore[arg-type]


@app.processor(INPUT, key_serde=serdes.String(), value_serde=serdes.Json(), stores=["totals"])
def total(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    value = record.value
    totals = ctx.store("totals")
    running = totals.get(record.key, 0) + value["amount"]
    totals.put(record.key, running)
    if value.get("poison"):
        raise ValueError(f"poison order {value['id']}")
    ctx.send(
        OUTPUT,
        key=record.key,
        value={"id": value["id"], "total": running},
        value_serde=serdes.Json(),
    )
    if value["id"] in PAUSE_IDS:
        _pause_once(value["id"])
