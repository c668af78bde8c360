"""Test topologies whose records the producer or the broker refuses, driven by the input.

Input values are ``{"id": n, "amount": a, "kind": k}``. Every record sends ``{"id", "total"}``
to TEST_OUTPUT keyed by its key, except as its kind says:

* ``poison``: the processor raises (after its store write, in the stateful app);
* ``null-key``: its output has no key (refused by a compacted output topic);
* ``big``: its output carries 300 kB more (refused by a small ``max.message.bytes``);
* ``noise``: like ``big`` but random bytes, which compression can't shrink;
* ``big-state``: the stateful app stores a 1.2 MB value (too large for its changelog);
* ``after-refusal``: a good record held until the broker's refusal of an earlier record of
  its transaction has reached the producer, so this one's output meets it (_STATE). Only the
  first time in a process: replays go through at once.

``stateless`` runs without stores (total = amount); ``stateful`` keeps a running total per key.
"""

from __future__ import annotations

import gc
import os
import random
import time

from confluent_kafka import KafkaError, KafkaException, Producer

import eokafka
from eokafka import serdes

APP_ID = os.environ.get("TEST_APP_ID", "refusals")
INPUT = os.environ.get("TEST_INPUT", "refusals-in")
OUTPUT = os.environ.get("TEST_OUTPUT", "refusals-out")
BIG = 300_000
_held: list[bool] = []  # whether an after-refusal record was held in this process

stateless = eokafka.App(APP_ID)
stateful = eokafka.App(APP_ID)
stateful.store("totals", backend=os.environ.get("TEST_BACKEND", "memory"))  # type: ignore[arg-type]


def _emit(record: eokafka.Record, ctx: eokafka.ProcessorContext, total: int) -> None:
    value = record.value
    kind = value.get("kind")
    if kind == "poison":
        raise ValueError(f"poison order {value['id']}")
    if kind == "after-refusal" and not _held:
        _held.append(True)
        _until_the_transaction_is_refused()
    out: dict[str, object] = {"id": value["id"], "total": total}
    if kind == "big":
        out["padding"] = "x" * BIG
    elif kind == "noise":
        out["padding"] = random.Random(value["id"]).randbytes(BIG).hex()
    key = None if kind == "null-key" else record.key
    ctx.send(OUTPUT, key=key, value=out, value_serde=serdes.Json())


def _until_the_transaction_is_refused(bound_s: float = 60.0) -> None:
    """Probe the worker's transactional producer (the only Producer in this process) until
    produce() fails with _STATE: librdkafka then holds the refusal of an earlier record of the
    open transaction. Probes that get through join that transaction, which can only abort."""
    producers = [o for o in gc.get_objects() if isinstance(o, Producer)]
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        for producer in producers:
            try:
                producer.produce(OUTPUT, b"probe", b"probe")
            except KafkaException as exc:
                if exc.args[0].code() == KafkaError._STATE:
                    return
                raise
        time.sleep(0.01)  # the probe's polling interval
    raise RuntimeError(f"no refusal reached the producer within {bound_s} s (liveness bound)")


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


# ``joined``: a stream-stream join of TEST_INPUT (left) with TEST_INPUT2 (right); a pair's
# result carries the left record's id and amount, and the padding its kind asks for. Its task
# reads two partitions, so records wait in its queue for timestamp order (tasks/ordering.py).
joined = eokafka.App(APP_ID)
_left = joined.stream(INPUT, key_serde=serdes.String(), value_serde=serdes.Json())
_right = joined.stream(
    os.environ.get("TEST_INPUT2", "refusals-in2"), key_serde=serdes.String(),
    value_serde=serdes.Json(),
)  # fmt: skip


def _pair(left: dict[str, object], right: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {"id": left["id"], "total": left["amount"]}
    if left.get("kind") == "noise":
        out["padding"] = random.Random(str(left["id"])).randbytes(BIG).hex()
    return out


_window = eokafka.JoinWindows(before_ms=5, grace_ms=60_000)
_left.join(_right, _pair, window=_window, name="pairs").to(
    OUTPUT, key_serde=serdes.String(), value_serde=serdes.Json()
)
