"""The plain-Python reference of windowed stream-stream joins, from their definition.

Per partition index, stream time is the largest timestamp seen so far on either side. A
record is late (dropped) when its own window has closed on arrival: a left record at ``t``
when ``t + after + grace < stream time``, a right one when ``t + before + grace < stream
time``. Among the records that are not late, a left ``l`` and a right ``r`` of the same key
join when ``l - before <= r <= l + after``, at timestamp ``max(l, r)``. A record that joined
nothing gives an unmatched result (left and outer joins: left records; outer: right ones too)
once the final stream time of its partition is past ``t + before + after + grace``.

No buffers, no stores: sets of records and the arithmetic above.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

from eokafka.windows.join import JoinWindows

JoinKind = Literal["inner", "left", "outer"]
Arrival = tuple[str, str, Any, int]  # side "L"/"R", key, value, timestamp (arrival order)
Result = tuple[str, Any, int]  # key, joined value, timestamp


def not_late(
    arrivals: Iterable[Arrival], window: JoinWindows, partition: Callable[[str], int]
) -> tuple[list[Arrival], dict[int, int]]:
    """The records that are not late, and each partition's final stream time."""
    now: dict[int, int] = {}
    kept = []
    for side, key, value, ts in arrivals:
        p = partition(key)
        now[p] = max(now.get(p, ts), ts)
        reach = window.after_ms if side == "L" else window.before_ms
        if ts + reach + window.grace_ms >= now[p]:
            kept.append((side, key, value, ts))
    return kept, now


def expected_join(
    arrivals: Iterable[Arrival],
    window: JoinWindows,
    kind: JoinKind,
    joiner: Callable[[Any, Any], Any],
    partition: Callable[[str], int],
) -> list[Result]:
    kept, now = not_late(arrivals, window, partition)
    lefts = [(k, v, t) for s, k, v, t in kept if s == "L"]
    rights = [(k, v, t) for s, k, v, t in kept if s == "R"]
    out: list[Result] = []
    joined_l: set[int] = set()
    joined_r: set[int] = set()
    for i, (lk, lv, lt) in enumerate(lefts):
        for j, (rk, rv, rt) in enumerate(rights):
            if lk == rk and lt - window.before_ms <= rt <= lt + window.after_ms:
                out.append((lk, joiner(lv, rv), max(lt, rt)))
                joined_l.add(i)
                joined_r.add(j)
    span = window.before_ms + window.after_ms + window.grace_ms
    if kind in ("left", "outer"):
        for i, (k, v, t) in enumerate(lefts):
            if i not in joined_l and t + span < now[partition(k)]:
                out.append((k, joiner(v, None), t))
    if kind == "outer":
        for j, (k, v, t) in enumerate(rights):
            if j not in joined_r and t + span < now[partition(k)]:
                out.append((k, joiner(None, v), t))
    return out


def expected_fk_join(
    left: dict[Any, Any],
    right: dict[Any, Any],
    foreign_key: Callable[[Any], Any],
    joiner: Callable[[Any, Any], Any],
    kind: Literal["inner", "left"],
) -> dict[Any, Any]:
    """A foreign-key join of two tables' final contents: each left row joins the right row
    whose key its value names (``foreign_key(value)``); ``left`` keeps the rows that join
    nothing (a None or absent foreign key) as ``joiner(value, None)``."""
    out = {}
    for key, value in left.items():
        fk = foreign_key(value)
        other = None if fk is None else right.get(fk)
        if other is not None or kind == "left":
            out[key] = joiner(value, other)
    return out
