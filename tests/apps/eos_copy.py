"""Test topology driven by environment variables, run by real worker processes.

Each input ``{"id": n, ...}`` yields two outputs (copy 0 and copy 1), so a transaction that
was half visible would show. ``TEST_PAUSE_IDS`` makes the worker stop mid-transaction at
those ids (after writing a marker file holding its pid, once per id) until
``TEST_PAUSE_DIR/release`` appears, giving a test a deterministic moment to SIGKILL or fence it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import eokafka
from eokafka import serdes

app = eokafka.App(os.environ.get("TEST_APP_ID", "eos-copy"))
INPUT = os.environ.get("TEST_INPUT", "eos-in")
OUTPUT = os.environ.get("TEST_OUTPUT", "eos-out")
PAUSE_IDS = {int(x) for x in os.environ.get("TEST_PAUSE_IDS", "").split(",") if x}
PAUSE_DIR = Path(os.environ.get("TEST_PAUSE_DIR", "."))


def _pause_once(n: int) -> None:
    marker = PAUSE_DIR / f"paused-{n}"
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    release = PAUSE_DIR / "release"
    while not release.exists():
        time.sleep(0.02)


@app.processor(INPUT, key_serde=serdes.String(), value_serde=serdes.Json())
def copy(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    value = record.value
    if value.get("poison"):
        raise ValueError(f"poison order {value['id']}")
    n = value["id"]
    for c in (0, 1):
        ctx.send(
            OUTPUT,
            key=record.key,
            value={"id": n, "copy": c, "src": f"{record.partition}:{record.offset}"},
            value_serde=serdes.Json(),
        )
    if value.get("big"):  # after the copies, larger than message.max.bytes: refused
        ctx.send(OUTPUT, key=record.key, value=b"x" * 2_000_000)
    if n in PAUSE_IDS:
        _pause_once(n)
