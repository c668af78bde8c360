"""An app whose errors go to ``on_error`` handlers: one for the app, one for a processor.

Inputs are JSON ``{"id": n, ...}`` keyed by str. ``TEST_INPUT`` (stateless, the app's
handler) copies each record to ``TEST_OUTPUT``; ``TEST_COUNTS_INPUT`` (stateful, its own
handler) counts records per key in a store and sends the running count to ``TEST_OUTPUT``;
``TEST_SKIP_INPUT`` (stateless, ``on_error="skip"``) copies too. A value's fields pick the
fault: ``"raise"`` a ValueError, ``"missing"`` a KeyError, ``"big"`` an output the broker
refuses (after a first output, so nothing of the record may be seen), ``"handler_raises"``
makes the app's handler raise, ``"handler_fails"`` makes it answer fail.
"""

from __future__ import annotations

import os

import eokafka
from eokafka import serdes
from eokafka.on_error import DeadLetter, Verdict

INPUT = os.environ.get("TEST_INPUT", "handlers-in")
COUNTS_INPUT = os.environ.get("TEST_COUNTS_INPUT", "handlers-counts-in")
SKIP_INPUT = os.environ.get("TEST_SKIP_INPUT", "handlers-skip-in")
OUTPUT = os.environ.get("TEST_OUTPUT", "handlers-out")
J, S = serdes.Json(), serdes.String()


def on_app(record: eokafka.Record, error: BaseException, stage: str) -> Verdict:
    """Decide by stage and exception class, as a user's handler would."""
    if b"handler_raises" in (record.value or b""):
        raise RuntimeError("the handler itself broke")
    if b"handler_fails" in (record.value or b""):
        return "fail"
    if stage == "process" and isinstance(error, ValueError):
        return "skip"
    return DeadLetter(headers={"handled-by": "app", "why": f"{stage}:{type(error).__name__}"})


def on_counts(record: eokafka.Record, error: BaseException, stage: str) -> Verdict:
    return DeadLetter(headers={"handled-by": "counts", "why": type(error).__name__})


app = eokafka.App(os.environ.get("TEST_APP_ID", "handlers"), on_error=on_app)


def _faults(value: dict) -> None:
    if value.get("raise"):
        raise ValueError(f"bad order {value['id']}")
    if value.get("missing"):
        value["no such field"]  # noqa: B018  (a KeyError, as a user's typo would raise)


@app.processor(INPUT, key_serde=S, value_serde=J)
def copy(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    value = record.value
    _faults(value)
    ctx.send(OUTPUT, key=record.key, value={"id": value["id"], "from": "copy"}, value_serde=J)
    if value.get("big"):
        ctx.send(OUTPUT, key=record.key, value=b"x" * 2_000_000)


@app.processor(COUNTS_INPUT, key_serde=S, value_serde=J, stores=["counts"], on_error=on_counts)
def count(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    store = ctx.store("counts")
    n = (store.get(record.key) or 0) + 1
    store.put(record.key, n)  # before the fault: the replay must take it back
    _faults(record.value)
    ctx.send(OUTPUT, key=record.key, value={"id": record.value["id"], "count": n}, value_serde=J)
    if record.value.get("big"):
        ctx.send(OUTPUT, key=record.key, value=b"x" * 2_000_000)


@app.processor(SKIP_INPUT, key_serde=S, value_serde=J, on_error="skip")
def skipper(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    _faults(record.value)
    value = {"id": record.value["id"], "from": "skipper"}
    ctx.send(OUTPUT, key=record.key, value=value, value_serde=J)
