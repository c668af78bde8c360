"""Test app: a lossy one-to-one sync. Each input record goes to ``TEST_OUTPUT`` unchanged (same
key, same value bytes), except those whose value has ``"lose": true``: it drops them, as a
broken sync would, leaving records for ``eokafka verify --repair`` to add.
"""

from __future__ import annotations

import json
import os

import eokafka

app = eokafka.App(os.environ.get("TEST_APP_ID", "sync-copy"))
INPUT = os.environ.get("TEST_INPUT", "sync-in")
OUTPUT = os.environ.get("TEST_OUTPUT", "sync-out")


@app.processor(INPUT)
def copy(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    if record.value is not None and json.loads(record.value).get("lose"):
        return
    ctx.send(OUTPUT, key=record.key, value=record.value)
