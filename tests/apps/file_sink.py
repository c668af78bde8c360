"""Test app: each input ``{"id": n, ...}`` goes to a file sink and to a Kafka topic.

Rows carry ``src`` (``partition:offset`` of the input) and, in JSON Lines, ``app`` (the
application id), so a test can tell every row's origin.

Environment: ``TEST_FILES_DIR``, ``TEST_FILES_FORMAT`` (jsonl | csv), ``TEST_ROLL_BYTES``,
``TEST_ROLL_SECONDS``.
"""

from __future__ import annotations

import os

import eokafka
from connectors.files import FileSink
from eokafka import serdes

app = eokafka.App(os.environ.get("TEST_APP_ID", "file-sink"))
INPUT = os.environ.get("TEST_INPUT", "files-in")
OUTPUT = os.environ.get("TEST_OUTPUT", "")
app.sink(
    FileSink(
        "files",
        os.environ.get("TEST_FILES_DIR", "out"),
        format=os.environ.get("TEST_FILES_FORMAT", "jsonl"),  # type: ignore[arg-type]
        columns=("id", "amount", "src"),
        roll_bytes=int(os.environ.get("TEST_ROLL_BYTES", "20000")),
        roll_seconds=float(os.environ.get("TEST_ROLL_SECONDS", "2.0")),
    )
)


@app.processor(INPUT, key_serde=serdes.String(), value_serde=serdes.Json())
def copy(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    value = dict(record.value, src=f"{record.partition}:{record.offset}")
    ctx.sink("files").write({**value, "app": app.application_id})
    if OUTPUT:
        ctx.send(OUTPUT, key=record.key, value=value, value_serde=serdes.Json())
