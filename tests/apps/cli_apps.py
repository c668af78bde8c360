"""Apps for the command-line tests: two co-partitioned inputs (a store fed by both), a
declared output, and a processor that raises on records marked ``{"boom": true}``.

Names come from the environment (TEST_APP_ID, TEST_INPUT, TEST_INPUT2, TEST_OUTPUT).
"""

from __future__ import annotations

import os

import eokafka
from eokafka import serdes

app = eokafka.App(os.environ.get("TEST_APP_ID", "cli-app"))
INPUT = os.environ.get("TEST_INPUT", "cli-in")
INPUT2 = os.environ.get("TEST_INPUT2", "cli-in2")
OUTPUT = os.environ.get("TEST_OUTPUT", "cli-out")
app.store("counts")


def check(value: dict) -> None:
    if value.get("boom"):
        raise ValueError(f"boom in record {value['id']}")  # the line a traceback must name


@app.processor(
    INPUT, INPUT2, key_serde=serdes.String(), value_serde=serdes.Json(), stores=["counts"],
    outputs=[OUTPUT],
)  # fmt: skip
def count(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    counts = ctx.store("counts")
    n = counts.get(record.key, 0) + 1
    counts.put(record.key, n)
    check(record.value)
    ctx.send(OUTPUT, key=record.key, value={"id": record.value["id"], "count": n},
             value_serde=serdes.Json())  # fmt: skip
