"""A plain-Python reference for event-time windows, written from the spec, not the code.

Per partition, in offset order: stream time is the largest timestamp so far; a record is late
when a window it belongs to has closed (tumbling/hopping: ``end + grace <= stream time``;
session/sliding: ``ts + grace < stream time``). No window starts before the epoch (as in Kafka
Streams): hopping windows that would are left out, and a sliding record before ``size`` has
``[0, size]`` as its left window. Windows are then computed by brute force from
each key's accepted records, and a window's result is final once its partition's stream time
reached its close time. Used by the unit tests and the integration tests alike.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eokafka import windows

# Event times start an hour ago, on the hour: records with CreateTime = event time must be
# younger than the broker's time retention (7 days), or its retention check deletes inputs
# and outputs under a running test.
RECENT = (int(time.time() * 1000) // 3_600_000 - 1) * 3_600_000

Rec = tuple[str, int, int]  # (key, timestamp, value)
Win = tuple[str, int, int]  # (key, start, end)

AGGS: dict[str, Callable[[list[int]], Any]] = {
    "count": len,
    "sum": sum,
    "min": min,
    "max": max,
    "mean": lambda vs: sum(vs) / len(vs),
    "aggregate": sum,  # aggregate(lambda: 0, add, merger=...) in the apps
    "reduce": max,  # reduce(max) in the apps
}


@dataclass(frozen=True)
class Spec:
    kind: str  # tumbling, hopping, sliding, session
    size: int = 0  # tumbling, hopping, sliding (max time difference)
    advance: int = 0  # hopping
    gap: int = 0  # session
    grace: int = 0

    def windows_of(self, ts: int) -> list[tuple[int, int]]:
        """Tumbling/hopping windows holding ts, by enumeration; none starts before 0."""
        step = self.advance if self.kind == "hopping" else self.size
        out = []
        for k in range((ts - self.size) // step - 1, ts // step + 2):
            start = k * step
            if 0 <= start <= ts < start + self.size:
                out.append((start, start + self.size))
        return out

    def late(self, ts: int, stream_time: int) -> bool:
        if self.kind in ("tumbling", "hopping"):
            return any(end + self.grace <= stream_time for _, end in self.windows_of(ts))
        return ts + self.grace < stream_time

    def close_at(self, end: int) -> int:
        if self.kind in ("tumbling", "hopping"):
            return end + self.grace
        if self.kind == "session":
            return end + self.gap + self.grace + 1
        return end + self.grace + 1

    def windows(self, times: list[int]) -> dict[tuple[int, int], list[int]]:
        """Brute force: window -> the record timestamps (indexes kept by the caller) in it."""
        found: set[tuple[int, int]] = set()
        if self.kind in ("tumbling", "hopping"):
            for t in times:
                found.update(self.windows_of(t))
        elif self.kind == "session":
            ordered = sorted(times)
            start = prev = ordered[0]
            for t in ordered[1:]:
                if t - prev > self.gap:
                    found.add((start, prev))
                    start = t
                prev = t
            found.add((start, prev))
        else:  # a record before `size` has [0, size] as its left window: none starts below 0
            for t in times:
                found.add((t - self.size, t) if t >= self.size else (0, self.size))
                if any(t < r <= t + 1 + self.size for r in times):
                    found.add((t + 1, t + 1 + self.size))
        inclusive = self.kind in ("session", "sliding")
        return {
            (s, e): [t for t in times if s <= t and (t <= e if inclusive else t < e)]
            for s, e in found
        }


@dataclass
class Expected:
    final: dict[Win, Any]  # windows closed by the end of the input, with their results
    open: dict[Win, Any]  # windows still open at the end
    late: list[tuple[int, int]]  # (partition, index in that partition) of late records


def expected(spec: Spec, partitions: dict[int, list[Rec]], agg: str) -> Expected:
    fold = AGGS[agg]
    out = Expected({}, {}, [])
    for p, records in partitions.items():
        stream_time = -1
        accepted: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for i, (key, ts, value) in enumerate(records):
            stream_time = max(stream_time, ts)
            if spec.late(ts, stream_time):
                out.late.append((p, i))
            else:
                accepted[key].append((ts, value))
        for key, recs in accepted.items():
            for (s, e), _ in spec.windows([t for t, _ in recs]).items():
                inclusive = spec.kind in ("session", "sliding")
                values = [v for t, v in recs if s <= t and (t <= e if inclusive else t < e)]
                target = out.final if spec.close_at(e) <= stream_time else out.open
                target[(key, s, e)] = fold(values)
    return out


def shuffled_input(
    rng: random.Random,
    partitions: int,
    per_partition: int,
    keys: int,
    step: int,
    disorder: int,
    late_every: int,
    late_by: int,
    base: int | None = None,
) -> dict[int, list[Rec]]:
    """Timestamps advancing by ``step`` on average, shuffled by up to ``disorder`` ms, with
    every ``late_every``-th record ``late_by`` ms behind; keys spread over all partitions
    (a key lives in one partition: its index mod partitions)."""
    base = RECENT if base is None else base
    out: dict[int, list[Rec]] = {}
    for p in range(partitions):
        names = [f"k{k}" for k in range(keys) if k % partitions == p]
        records = []
        for i in range(per_partition):
            ts = base + i * step + rng.randint(0, disorder)
            if late_every and i % late_every == late_every - 1:
                ts -= late_by
            records.append((rng.choice(names), max(ts, 0), rng.randint(1, 100)))
        out[p] = records
    return out


# The window definitions the tests use, each with its reference spec.
SPECS: dict[str, tuple[Spec, windows.Windows]] = {
    "tumbling": (Spec("tumbling", size=1_000, grace=300), windows.Tumbling(1_000, grace_ms=300)),
    "hopping": (
        Spec("hopping", size=1_000, advance=250, grace=200),
        windows.Hopping(1_000, advance_ms=250, grace_ms=200),
    ),
    "sliding": (Spec("sliding", size=500, grace=250), windows.Sliding(500, grace_ms=250)),
    "session": (Spec("session", gap=120, grace=200), windows.Session(120, grace_ms=200)),
}
