"""The reference for apps that emit a running total per key with every input, in plain Python.

Inputs are ``(key, {"id": n, "amount": a, ...})`` as produced; each input's output is
``{"id": n, "total": t}`` under the same key. Per key the committed outputs (in offset order:
one key lives in one output partition) are the order the app applied its inputs, so the
reference replays them in that order: each output's total must be the key's total before it
plus its own input's amount. A double-applied or lost input changes every later total of its
key, even when the two cancel out in the last one.

Inputs of one input stream (one topic) must be applied in the order they were produced; with a
single stream that makes each total the prefix sum over the key's inputs in input order. Inputs
of two co-partitioned topics may interleave in any order, and only their order within each
topic is checked.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol


class Output(Protocol):
    """A committed output record (tests.kafka_helpers.Record has these fields)."""

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...


def check_running_totals(
    inputs: Sequence[tuple[bytes, bytes]],
    records: Sequence[Output],
    streams: Sequence[str] | None = None,
) -> dict[str, int]:
    """Every input emitted exactly once under its key, each total exact; the final totals.

    ``streams`` names each input's stream (its topic) when inputs come from more than one.
    """
    position: dict[int, int] = {}  # input id -> its index in ``inputs``
    amount: dict[int, int] = {}
    key_of: dict[int, bytes] = {}
    for i, (key, value) in enumerate(inputs):
        v = json.loads(value)
        position[v["id"]], amount[v["id"]], key_of[v["id"]] = i, v["amount"], key
    emitted: dict[int, int] = defaultdict(int)
    by_key: dict[bytes, list[tuple[int, int]]] = defaultdict(list)  # key -> [(id, total)]
    for r in records:
        assert r.key is not None and r.value is not None, f"an output without key or value: {r}"
        v = json.loads(r.value)
        emitted[v["id"]] += 1
        by_key[r.key].append((v["id"], v["total"]))
    dupes = sorted(i for i, n in emitted.items() if n > 1)
    missing = sorted(set(amount) - set(emitted))
    unknown = sorted(set(emitted) - set(amount))
    assert not dupes, f"{len(dupes)} inputs emitted more than once, e.g. ids {dupes[:5]}"
    assert not missing, f"{len(missing)} inputs never emitted, e.g. ids {missing[:5]}"
    assert not unknown, f"{len(unknown)} outputs of no input, e.g. ids {unknown[:5]}"

    final: dict[str, int] = {}
    wrong: list[str] = []
    misplaced: list[str] = []
    reordered: list[str] = []
    for key, outputs in by_key.items():
        running = 0
        last_in_stream: dict[str, int] = {}
        first_wrong = None
        for n, total in outputs:
            if key_of[n] != key:
                misplaced.append(f"id {n} (input key {key_of[n]!r}) under key {key!r}")
            stream = streams[position[n]] if streams is not None else ""
            if last_in_stream.get(stream, -1) > position[n]:
                reordered.append(f"{key.decode()}: id {n} applied after a later input")
            last_in_stream[stream] = position[n]
            running += amount[n]
            if total != running and first_wrong is None:
                first_wrong = f"{key.decode()}: id {n} emitted {total}, want {running}"
        if first_wrong is not None:
            wrong.append(first_wrong)
        final[key.decode()] = running
    assert not misplaced, f"{len(misplaced)} outputs under another key, e.g. {misplaced[:3]}"
    assert not reordered, (
        f"{len(reordered)} inputs applied out of their stream's order, e.g. {reordered[:3]}"
    )
    assert not wrong, (
        f"{len(wrong)} keys with a wrong running total (the first per key), e.g. {wrong[:3]}"
    )
    return final
