"""Test topology driven by environment variables, run by real worker processes.

Each input ``{"id": n, ...}`` yields two outputs (copy 0 and copy 1), stamped with the input's
position (``src``) and the writing process (``pid``), so a transaction that was half visible
would show, and a test can tell whose transaction an output was in. ``TEST_PAUSE_IDS`` makes the
worker stop mid-transaction at those ids (after writing a marker file holding its pid, once per
id) until ``TEST_PAUSE_DIR/release`` appears, giving a test a deterministic moment to SIGKILL or
fence it. Beside the marker, ``positions-<id>.json`` holds the last input offset this process
processed per partition, so the test can tell which records the paused transaction holds.
"""

from __future__ import annotations

import json
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
POSITIONS: dict[int, int] = {}  # input partition -> last offset processed by this process


def _pause_once(n: int) -> None:
    marker = PAUSE_DIR / f"paused-{n}"
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return
    (PAUSE_DIR / f"positions-{n}.json").write_text(json.dumps(POSITIONS))
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
    POSITIONS[record.partition] = record.offset
    src, pid = f"{record.partition}:{record.offset}", os.getpid()
    for c in (0, 1):
        ctx.send(
            OUTPUT,
            key=record.key,
            value={"id": n, "copy": c, "src": src, "pid": pid},
            value_serde=serdes.Json(),
        )
    if value.get("big"):  # after the copies, larger than message.max.bytes: refused
        ctx.send(OUTPUT, key=record.key, value=b"x" * 2_000_000)
    if n in PAUSE_IDS:
        _pause_once(n)
