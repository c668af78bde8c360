"""Window assignment, session merging and closing (eokafka.windows) against a plain reference.

The simulation below drives the pure functions the way the DSL does (stream time per
partition, late check, add, close everything passed), and must agree with
tests/windows_reference.py, which computes windows by brute force from the spec.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from eokafka import serdes, windows
from eokafka.windows import (
    REMOVED,
    Aggregator,
    KeyState,
    Windowed,
    WindowedSerde,
    decode_state,
    encode_state,
)
from tests.windows_reference import SPECS, Rec, expected, shuffled_input

AGGREGATORS = {
    "count": windows.counting(),
    "sum": windows.summing(),
    "min": windows.picking(min),
    "max": windows.picking(max),
    "mean": windows.averaging(),
    "aggregate": windows.aggregating(
        lambda: 0, lambda k, v, a: a + v, merger=lambda k, a, b: a + b
    ),
    "reduce": windows.reducing(max),
}


def simulate(
    w: windows.Windows, partitions: dict[int, list[Rec]], agg: Aggregator, changes: bool = False
) -> tuple[dict[Any, Any], dict[Any, Any], list[tuple[int, int]], dict[Any, Any]]:
    """(finals, open windows, late records, last update per window) as the DSL would see."""
    finals: dict[Any, Any] = {}
    still_open: dict[Any, Any] = {}
    late: list[tuple[int, int]] = []
    last_update: dict[Any, Any] = {}
    for p, records in partitions.items():
        stream_time = -1
        states: dict[str, KeyState] = {}
        for i, (key, ts, value) in enumerate(records):
            stream_time = max(stream_time, ts)
            if w.is_late(ts, stream_time):
                late.append((p, i))
                continue
            state = states.setdefault(key, KeyState())
            for s, e, a in w.add(state, key, ts, value, agg, changes):
                last_update[(key, s, e)] = None if a is REMOVED else agg.result(a)
            for k, st in list(states.items()):  # as the DSL: only keys whose close is due
                due = w.next_close(st)
                if due is None or due > stream_time:
                    continue
                for s, e, a in w.close(st, k, stream_time, agg) or []:
                    assert (k, s, e) not in finals, "a window closed twice"
                    finals[(k, s, e)] = agg.result(a)
                if w.next_close(st) is None:
                    del states[k]
        for key, state in states.items():
            for s, e, a in w.close(state, key, 2**62, agg) or []:
                still_open[(key, s, e)] = agg.result(a)
    return finals, still_open, late, last_update


@pytest.mark.parametrize("kind", SPECS)
@pytest.mark.parametrize("agg", ["count", "sum", "min", "max", "mean", "aggregate", "reduce"])
@pytest.mark.parametrize("base", [None, 0], ids=["recent", "from-the-epoch"])
def test_windows_match_the_reference_on_shuffled_late_input(
    kind: str, agg: str, base: int | None
) -> None:
    spec, w = SPECS[kind]
    for seed in range(3):
        rng = random.Random(seed)
        data = shuffled_input(
            rng, 3, 400, 7, step=37, disorder=400, late_every=23, late_by=900, base=base
        )
        want = expected(spec, data, agg)
        finals, still_open, late, updates = simulate(w, data, AGGREGATORS[agg], changes=True)
        assert late == want.late
        assert want.late, "the input has late records"
        assert finals == want.final
        assert still_open == want.open
        # Update mode: the last update of every window is its result; merged-away sessions
        # end as tombstones.
        assert {k: v for k, v in updates.items() if v is not None} == want.final | want.open


def test_a_tumbling_window_is_start_inclusive_end_exclusive_and_closes_at_end_plus_grace() -> None:
    w = windows.Tumbling(10, grace_ms=5)
    assert w.windows_for(0) == [(0, 10)]
    assert w.windows_for(9) == [(0, 10)]
    assert w.windows_for(10) == [(10, 20)]
    assert not w.is_late(9, 14)
    assert w.is_late(9, 15)  # 10 + 5 <= 15
    state = KeyState()
    count = windows.counting()
    w.add(state, "k", 3, None, count, False)
    assert w.next_close(state) == 15
    assert w.close(state, "k", 14, count) is None
    assert w.close(state, "k", 15, count) == [(0, 10, 1)]
    assert state.entries == [] and w.next_close(state) is None


def test_hopping_windows_hold_a_record_size_over_advance_times() -> None:
    w = windows.Hopping(10, advance_ms=3)
    assert w.windows_for(10) == [(3, 13), (6, 16), (9, 19)]
    assert w.windows_for(3) == [(0, 10), (3, 13)]  # none starts before the epoch
    assert w.is_late(10, 13) and not w.is_late(10, 12)  # the earliest, (3, 13), closed


def test_sessions_merge_when_a_record_bridges_them() -> None:
    w = windows.Session(gap_ms=10)
    count = windows.counting()
    state = KeyState()
    assert w.add(state, "k", 100, None, count, True) == [(100, 100, 1)]
    assert w.add(state, "k", 125, None, count, True) == [(125, 125, 1)]
    # A session that grows changes its windowed key: the old one goes as a tombstone.
    assert w.add(state, "k", 105, None, count, True) == [(100, 100, REMOVED), (100, 105, 2)]
    assert w.add(state, "k", 102, None, count, True) == [(100, 105, 3)]
    # 115 is within 10 of 105 and of 125: both sessions become one.
    assert w.add(state, "k", 115, None, count, True) == [
        (100, 105, REMOVED),
        (125, 125, REMOVED),
        (100, 125, 5),
    ]
    assert state.entries == [[100, 125, 5]]
    assert w.next_close(state) == 125 + 10 + 1
    assert w.close(state, "k", 135, count) is None
    assert w.close(state, "k", 136, count) == [(100, 125, 5)]


def test_sessions_need_a_merging_aggregation() -> None:
    w = windows.Session(gap_ms=10)
    with pytest.raises(TypeError, match="merge"):
        w.add(KeyState(), "k", 1, 1, windows.aggregating(lambda: 0, lambda k, v, a: a + v), False)


def test_sliding_windows_are_every_distinct_record_set_within_size() -> None:
    w = windows.Sliding(10)
    assert w.windows([105, 108, 130]) == [(95, 105), (98, 108), (106, 116), (120, 130)]
    state = KeyState()
    total = windows.summing()
    for ts, v in [(105, 1), (108, 2), (130, 4)]:
        w.add(state, "k", ts, v, total, False)
    assert w.close(state, "k", 109, total) == [(95, 105, 1), (98, 108, 3)]  # ends <= 109 - 1
    assert w.close(state, "k", 109, total) is None  # nothing new: mark holds
    assert w.next_close(state) == 117
    assert w.close(state, "k", 131, total) == [(106, 116, 2), (120, 130, 4)]
    assert w.close(state, "k", 200, total) == []
    assert state.entries == []


def test_no_window_starts_before_the_epoch() -> None:
    """As in Kafka Streams: a hopping window that would start before 0 does not exist
    (TimeWindows.windowsFor), and a sliding record earlier than ``size`` has ``[0, size]``,
    which holds every record up to ``size``, as its left window (the early-record path of
    KStreamSlidingWindowAggregate)."""
    hop = windows.Hopping(10_000, advance_ms=5_000)
    assert hop.windows_for(1_000) == [(0, 10_000)]
    assert hop.windows_for(0) == [(0, 10_000)]
    assert hop.windows_for(5_000) == [(0, 10_000), (5_000, 15_000)]
    assert not hop.is_late(1_000, 9_999) and hop.is_late(1_000, 10_000)
    state, count = KeyState(), windows.counting()
    assert hop.add(state, "k", 1_000, None, count, True) == [(0, 10_000, 1)]
    assert hop.next_close(state) == 10_000

    sliding = windows.Sliding(5_000)
    assert sliding.windows([1_000]) == [(0, 5_000)]
    assert sliding.windows([1_000, 3_000, 5_000, 7_000]) == [
        (0, 5_000), (1_001, 6_001), (2_000, 7_000), (3_001, 8_001), (5_001, 10_001)
    ]
    state, total = KeyState(), windows.summing()
    for ts, v in [(5_000, 4), (1_000, 1), (7_000, 8), (3_000, 2)]:  # out of order
        changes = sliding.add(state, "k", ts, v, total, True)
        assert all(start >= 0 for start, _, _ in changes), changes
    assert sliding.close(state, "k", 20_000, total) == [
        (0, 5_000, 7), (1_001, 6_001, 6), (2_000, 7_000, 14), (3_001, 8_001, 12),
        (5_001, 10_001, 8),
    ]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: windows.Tumbling(0), "size_ms"),
        (lambda: windows.Tumbling(10, grace_ms=-1), "grace_ms"),
        (lambda: windows.Hopping(10, advance_ms=11), "advance_ms"),
        (lambda: windows.Session(1.5), "gap_ms"),  # type: ignore[arg-type]
        (lambda: windows.Sliding(-1), "size_ms"),
    ],
)
def test_window_definitions_check_their_arguments(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_key_state_round_trips_through_bytes() -> None:
    json = serdes.Json()
    state = KeyState([[0, 10, {"a": 1}], [-5, 5, None], [7, 9, [1.5, 2]]], mark=-3)
    data = encode_state(state, json.serialize)
    assert decode_state(data, json.deserialize) == state
    assert decode_state(encode_state(KeyState(), json.serialize), json.deserialize) == KeyState()


@pytest.mark.parametrize("inner", [serdes.String(), serdes.Json(), serdes.Bytes()])
def test_windowed_keys_are_key_bytes_then_big_endian_start_and_end(inner: Any) -> None:
    key = b"user-1" if isinstance(inner, serdes.Bytes) else "user-1"
    serde = WindowedSerde(inner)
    data = serde.serialize(Windowed(key, 1_700_000_000_000, 1_700_000_060_000))
    assert data is not None
    assert data[:-16] == inner.serialize(key)
    assert data[-16:-8] == (1_700_000_000_000).to_bytes(8, "big", signed=True)
    assert data[-8:] == (1_700_000_060_000).to_bytes(8, "big", signed=True)
    assert serde.deserialize(data) == Windowed(key, 1_700_000_000_000, 1_700_000_060_000)
    assert serde.deserialize(serde.serialize(Windowed(key, -10, -1))) == (key, -10, -1)
    assert serde.serialize(None) is None and serde.deserialize(None) is None


def test_windowed_serde_rejects_what_it_cannot_write_or_read() -> None:
    serde = WindowedSerde(serdes.String())
    with pytest.raises(serdes.SerdeError, match="Windowed"):
        serde.serialize("not windowed")
    with pytest.raises(serdes.SerdeError, match="16 bytes"):
        serde.deserialize(b"short")


def test_records_exactly_gap_apart_share_a_session_one_more_ms_does_not() -> None:
    w = windows.Session(gap_ms=10)
    count = windows.counting()
    state = KeyState()
    w.add(state, "k", 100, None, count, False)
    assert w.add(state, "k", 110, None, count, True) == [(100, 100, REMOVED), (100, 110, 2)]
    assert w.add(state, "k", 121, None, count, True) == [(121, 121, 1)]  # 11 ms after 110
    # A record exactly gap from both sessions bridges them.
    bridge = KeyState()
    w.add(bridge, "k", 100, None, count, False)
    w.add(bridge, "k", 120, None, count, False)
    assert w.add(bridge, "k", 110, None, count, True) == [
        (100, 100, REMOVED),
        (120, 120, REMOVED),
        (100, 120, 3),
    ]
    # Still open at end + gap (a record at 120 could join), closed one ms later.
    assert w.close(bridge, "k", 130, count) is None
    assert w.close(bridge, "k", 131, count) == [(100, 120, 3)]
