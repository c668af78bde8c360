"""Timer test topology (eokafka/timers.py), run by real worker processes.

``TEST_APP_ID``, ``TEST_INPUT``, ``TEST_OUTPUT`` as in eos_copy.py. Inputs are String keys
with the String values "order" (the key's stream-time timer: timestamp + TIMEOUT_MS),
"payment" (cancels it) and "remind" (the key's wall-clock timer, REMIND_MS from now). A
recurring stream-time schedule every EVERY_MS and a one-shot at AT_MS tick. Every firing
sends ``{"what", "key", "t", "n"}`` to the output partition of its task, where ``n`` counts
the firings of its kind on the partition in the store "fired", written by the timer: so a
firing whose store write was lost or doubled shows.
"""

from __future__ import annotations

import os
import time

import eokafka
from eokafka import serdes
from eokafka.timers import Timer
from tests.apps.eos_copy import INPUT, OUTPUT

S, J = serdes.String(), serdes.Json()
TIMEOUT_MS, EVERY_MS, AT_MS, REMIND_MS = 1_000, 500, 3_000, 300

app = eokafka.App(os.environ.get("TEST_APP_ID", "timers"))
app.store("fired", backend="rocksdb", key_serde=S, value_serde=J)


def _emit(ctx: eokafka.ProcessorContext, what: str, key: str, timer: Timer) -> None:
    counts = ctx.store("fired")
    n = counts.get(timer.kind, 0) + 1
    counts.put(timer.kind, n)
    value = {"what": what, "key": key, "t": timer.time, "n": n}
    ctx.send(OUTPUT, key, value, value_serde=J, partition=ctx.partition)


def tick(timer: Timer, ctx: eokafka.ProcessorContext) -> None:
    _emit(ctx, "every" if timer.name == "tick" else "at", "", timer)


def setup(ctx: eokafka.ProcessorContext) -> None:
    ctx.schedule(EVERY_MS, tick)
    ctx.schedule_at(AT_MS, tick, name="at")


def expired(timer: Timer, ctx: eokafka.ProcessorContext) -> None:
    _emit(ctx, "key" if timer.kind == "stream-time" else "remind", timer.key, timer)


@app.processor(INPUT, key_serde=S, value_serde=S, stores=["fired"], init=setup,
               on_timer=expired)  # fmt: skip
def orders(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    if record.value == "order":
        ctx.timers.set(record.key, record.timestamp + TIMEOUT_MS)
    elif record.value == "payment":
        ctx.timers.cancel(record.key)
    elif record.value == "remind":
        ctx.timers.set(record.key, time.time_ns() // 1_000_000 + REMIND_MS, kind="wall-clock")
