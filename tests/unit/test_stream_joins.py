"""Windowed stream-stream joins (``stream.join(other, fn, window=JoinWindows(...))``), run by
the worker itself through eokafka.testing, against tests/joins_reference.py.

The driver processes records in the order they are piped, so the reference replays that
order to know each record's stream time; everything else it computes from the definition.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import eokafka
from eokafka import JoinWindows, serdes
from eokafka.errors import TopologyError
from eokafka.testing import TestDriver
from tests.joins_reference import Arrival, JoinKind, expected_join

S, J = serdes.String(), serdes.Json()
WINDOW = JoinWindows(before_ms=100, after_ms=200, grace_ms=50)


def _pair(left: Any, right: Any) -> list[Any]:
    return [left, right]


def _app(kind: JoinKind, window: JoinWindows = WINDOW) -> eokafka.App:
    app = eokafka.App("sj")
    orders = app.stream("orders", key_serde=S, value_serde=J)
    payments = app.stream("payments", key_serde=S, value_serde=J)
    join = {"inner": orders.join, "left": orders.left_join, "outer": orders.outer_join}[kind]
    join(payments, _pair, window=window, name="op").to("out", key_serde=S, value_serde=J)
    return app


def _out(driver: TestDriver) -> list[tuple[str, Any, int]]:
    return [(r.key, r.value, r.timestamp) for r in driver.output("out", key_serde=S, value_serde=J)]


def _buffered(driver: TestDriver, store: str) -> set[str]:
    """The keys with records in a join buffer (window store entries: 0x01 + key bytes)."""
    return {key[1:].decode() for key in driver.store(store)}


def _pipe(driver: TestDriver, side: str, key: str, value: Any, ts: int) -> None:
    driver.pipe("orders" if side == "L" else "payments", key, value, timestamp=ts)


def test_inner_join_matches_within_the_window_in_either_order(tmp_path: Path) -> None:
    with TestDriver(_app("inner"), state_dir=str(tmp_path)) as driver:
        _pipe(driver, "L", "k", "o1", 1000)
        _pipe(driver, "R", "k", "p1", 1150)  # 150 after: within after_ms=200
        _pipe(driver, "R", "k", "p2", 850)  # 150 before: outside before_ms=100
        _pipe(driver, "R", "x", "p3", 1000)  # another key
        _pipe(driver, "L", "k", "o2", 1100)  # p1 10 before... and p2 250 before: no
        assert sorted(_out(driver)) == [
            ("k", ["o1", "p1"], 1150),  # the later of the two timestamps
            ("k", ["o2", "p1"], 1150),
        ]


def test_left_join_waits_for_the_window_to_close(tmp_path: Path) -> None:
    """No spurious unmatched result: a match that comes late within the window wins."""
    with TestDriver(_app("left"), state_dir=str(tmp_path)) as driver:
        _pipe(driver, "L", "a", "o1", 1000)
        _pipe(driver, "L", "b", "o2", 1000)
        _pipe(driver, "L", "z", "tick", 1340)  # 1000 + 100 + 200 + 50 = 1350: not past yet
        assert _out(driver) == []
        _pipe(driver, "R", "a", "p1", 1199)  # in o1's window, and not late (1199+100+50)
        assert _out(driver) == [("a", ["o1", "p1"], 1199)]
        _pipe(driver, "L", "z", "tick", 1351)  # past o2's close: its unmatched result
        assert _out(driver)[1:] == [("b", ["o2", None], 1000)]
        assert _buffered(driver, "op-left") == {"z"}  # o1 and o2 expired


def test_outer_join_emits_both_sides_unmatched_once(tmp_path: Path) -> None:
    with TestDriver(_app("outer"), state_dir=str(tmp_path)) as driver:
        _pipe(driver, "R", "a", "p1", 1000)
        _pipe(driver, "L", "b", "o1", 1000)
        assert _out(driver) == []
        _pipe(driver, "L", "z", "tick", 5000)
        assert sorted(_out(driver), key=str) == sorted(
            [("a", [None, "p1"], 1000), ("b", ["o1", None], 1000)], key=str
        )
        _pipe(driver, "L", "z", "tick", 9000)  # nothing twice
        assert len(_out(driver)) == 3  # and the first tick's own unmatched result


def test_late_records_are_dropped_and_counted(tmp_path: Path) -> None:
    with TestDriver(_app("left"), state_dir=str(tmp_path)) as driver:
        _pipe(driver, "L", "z", "tick", 10_000)
        _pipe(driver, "L", "a", "o1", 10_000 - 200 - 50 - 1)  # its window closed
        _pipe(driver, "R", "a", "p1", 10_000 - 100 - 50 - 1)  # the right side's reach: before
        _pipe(driver, "R", "b", "p2", 10_000 - 100 - 50)  # just in time
        assert driver.metric("eokafka_late_records_total", store="op", action="dropped") == 2
        assert _out(driver) == []
        assert _buffered(driver, "op-right") == {"b"}


def test_a_crash_replays_to_the_same_results_once(tmp_path: Path) -> None:
    with TestDriver(_app("outer"), state_dir=str(tmp_path)) as driver:
        _pipe(driver, "L", "a", "o1", 1000)
        _pipe(driver, "L", "c", "o3", 1000)
        driver.write("payments", "a", "p1", timestamp=1100)  # one topic: processed in order
        driver.write("payments", "z", "tick", timestamp=3000)
        driver.process()
        assert len(driver.output("out", include_open=True)) == 2
        driver.crash()
        driver.commit()
        assert sorted(_out(driver), key=str) == sorted(
            [("a", ["o1", "p1"], 1100), ("c", ["o3", None], 1000)], key=str
        )


@pytest.mark.parametrize("kind", ["inner", "left", "outer"])
def test_random_out_of_order_input_matches_the_reference(tmp_path: Path, kind: JoinKind) -> None:
    """Out of order and partly late, with crashes that replay an open transaction.

    The replay after a crash reads each topic in order, but may interleave the two topics
    differently, and lateness depends on the interleaving: the records left open at a crash
    are all of one side, so the reference knows the order they are processed in.
    """
    rng = random.Random(kind)
    window = JoinWindows(before_ms=30, after_ms=70, grace_ms=40)
    arrivals: list[Arrival] = []
    clock = 0
    for i in range(600):
        clock += rng.randint(0, 6)
        late = rng.random() < 0.05
        ts = max(0, clock - (rng.randint(150, 400) if late else rng.randint(0, 90)))
        side = "L" if i % 100 > 96 else rng.choice("LR")
        arrivals.append((side, f"k{rng.randint(0, 15)}", f"v{i}", ts))
    with TestDriver(_app(kind, window), partitions=2, state_dir=str(tmp_path)) as driver:
        for n, (side, key, value, ts) in enumerate(arrivals):
            driver.write("orders" if side == "L" else "payments", key, value, timestamp=ts)
            driver.process()
            if n % 100 == 99:
                driver.crash()
            if n % 100 < 97 or n % 100 == 99:
                driver.commit()
        driver.commit()
        got = sorted(_out(driver), key=repr)
        partition = {
            key: driver.cluster.partition_for("orders", key.encode(), driver._partitioner)
            for _, key, _, _ in arrivals
        }
    want = expected_join(arrivals, window, kind, _pair, lambda key: partition[key])
    assert got == sorted(want, key=repr)
    assert any(None in v for _, v, _ in want) == (kind != "inner")


def test_a_stream_join_needs_a_window_and_a_name() -> None:
    app = eokafka.App("sj")
    orders = app.stream("orders", key_serde=S, value_serde=J)
    payments = app.stream("payments", key_serde=S, value_serde=J)
    with pytest.raises(TopologyError, match="window=JoinWindows"):
        orders.join(payments, _pair, name="op")
    with pytest.raises(TopologyError, match="name="):
        orders.join(payments, _pair, window=WINDOW)
    with pytest.raises(TopologyError, match="JoinWindows"):
        orders.join(payments, _pair, window=5000, name="op")  # type: ignore[arg-type]
    table = app.table("prices", key_serde=S, value_serde=J)
    with pytest.raises(TopologyError, match="table"):
        orders.join(table, _pair, window=WINDOW, name="op2")
    with pytest.raises(ValueError, match="grace_ms"):
        JoinWindows(before_ms=1, after_ms=1, grace_ms=-1)


def test_joined_streams_must_be_co_partitioned(tmp_path: Path) -> None:
    with pytest.raises(
        TopologyError, match=r"orders \(2 partitions\), payments \(3 partitions\) share a store"
    ):
        TestDriver(_app("inner"), partitions={"orders": 2, "payments": 3}, state_dir=str(tmp_path))


def test_describe_draws_both_sides_of_the_join() -> None:
    text = _app("outer").topology.describe("sj")
    assert "outer_join(op" in text
    assert "sj-op-left-changelog" in text and "sj-op-right-changelog" in text
