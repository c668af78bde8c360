"""Test topologies whose records the producer or the broker refuses, driven by the input.

Input values are ``{"id": n, "amount": a, "kind": k}``. Every record sends ``{"id", "total"}``
to TEST_OUTPUT keyed by its key, except as its kind says:

* ``poison``: the processor raises (after its store write, in the stateful app);
* ``null-key``: its output has no key (refused by a compacted output topic);
* ``big``: its output carries 300 kB more (refused by a small ``max.message.bytes``);
* ``noise``: like ``big`` but random bytes, which compression can't shrink;
* ``big-state``: the stateful app stores a 1.2 MB value (too large for its changelog);
* ``slow``: a good record that takes 0.5 s, so the refusal of an earlier record of its
  transaction reaches the producer before this one's output is sent (which then gets _STATE).

``stateless`` runs without stores (total = amount); ``stateful`` keeps a running total per key.
"""

from __future__ import annotations

import os
import random
import time

import eokafka
from eokafka import serdes

APP_ID = os.environ.get("TEST_APP_ID", "refusals")
INPUT = os.environ.get("TEST_INPUT", "refusals-in")
OUTPUT = os.environ.get("TEST_OUTPUT", "refusals-out")
BIG = 300_000

stateless = eokafka.App(APP_ID)
stateful = eokafka.App(APP_ID)
stateful.store("totals", backend=os.environ.get("TEST_BACKEND", "memory"))  # type: ignore[arg-type]


def _emit(record: eokafka.Record, ctx: eokafka.ProcessorContext, total: int) -> None:
    value = record.value
    kind = value.get("kind")
    if kind == "poison":
        raise ValueError(f"poison order {value['id']}")
    if kind == "slow":
        time.sleep(0.5)
    out: dict[str, object] = {"id": value["id"], "total": total}
    if kind == "big":
        out["padding"] = "x" * BIG
    elif kind == "noise":
        out["padding"] = random.Random(value["id"]).randbytes(BIG).hex()
    key = None if kind == "null-key" else record.key
    ctx.send(OUTPUT, key=key, value=out, value_serde=serdes.Json())


@stateless.processor(INPUT, key_serde=serdes.String(), value_serde=serdes.Json())
def passthrough(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    _emit(record, ctx, record.value["amount"])


@stateful.processor(INPUT, key_serde=serdes.String(), value_serde=serdes.Json(), stores=["totals"])
def running_total(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    totals = ctx.store("totals")
    total = totals.get(record.key, 0) + record.value["amount"]
    totals.put(record.key, total)
    if record.value.get("kind") == "big-state":
        totals.put(f"{record.key}-blob", "y" * 1_200_000)
    _emit(record, ctx, total)
