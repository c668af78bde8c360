"""Versioned tables (``app.table(..., history_ms=)``) and the time-aligned (as-of)
stream-table join, run by the worker itself through eokafka.testing."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import eokafka
from eokafka import serdes
from eokafka.errors import TopologyError
from eokafka.testing import TestDriver

S, J = serdes.String(), serdes.Json()


def _app(
    left: bool = False,
    max_wait_ms: int = 0,
    history_ms: int = 10_000,
    release_on_idle_ms: int | None = None,
) -> eokafka.App:
    app = eokafka.App("asof")
    prices = app.table("prices", key_serde=S, value_serde=J, history_ms=history_ms)
    clicks = app.stream("clicks", key_serde=S, value_serde=J)
    join = clicks.left_join if left else clicks.join
    join(
        prices,
        lambda c, p: [c, p],
        name="priced",
        max_wait_ms=max_wait_ms,
        release_on_idle_ms=release_on_idle_ms,
    ).to("out", key_serde=S, value_serde=J)
    return app


def _out(driver: TestDriver) -> list[tuple[str, Any, int]]:
    return sorted(
        ((r.key, r.value, r.timestamp) for r in driver.output("out", key_serde=S, value_serde=J)),
        key=repr,
    )


def test_a_stream_record_joins_the_version_valid_at_its_time(tmp_path: Path) -> None:
    with TestDriver(_app(left=True), state_dir=str(tmp_path)) as driver:
        driver.pipe("prices", "p", 10, timestamp=1000)
        driver.pipe("prices", "p", 20, timestamp=3000)
        driver.pipe("clicks", "p", "c1", timestamp=2000)
        driver.pipe("clicks", "p", "c2", timestamp=3000)
        driver.pipe("clicks", "p", "c0", timestamp=500)  # before any version
        driver.pipe("prices", "p", None, timestamp=4000)  # deleted from 4000 on
        driver.pipe("clicks", "p", "c3", timestamp=4500)
        driver.pipe("prices", "p", 15, timestamp=2500)  # out of order, within the history
        driver.pipe("clicks", "p", "c4", timestamp=2600)
        assert _out(driver) == sorted(
            [
                ("p", ["c1", 10], 2000),
                ("p", ["c2", 20], 3000),
                ("p", ["c0", None], 500),
                ("p", ["c3", None], 4500),
                ("p", ["c4", 15], 2600),
            ],
            key=repr,
        )


def _random_inputs(rng: random.Random) -> tuple[list[Any], list[Any]]:
    """Table updates in time order per key, and stream records, over a few keys."""
    table = sorted(
        ((f"k{rng.randint(0, 5)}", rng.choice([None, *range(50)]), rng.randint(0, 5000))
         for _ in range(80)),
        key=lambda r: r[2],
    )  # fmt: skip
    stream = [(f"k{rng.randint(0, 5)}", f"s{i}", rng.randint(0, 5000)) for i in range(150)]
    return table, stream


def _as_of(table: list[Any], key: str, ts: int) -> Any:
    value = None
    for k, v, t in table:  # in time order: the last version at or before ts
        if k == key and t <= ts:
            value = v
    return value


@pytest.mark.parametrize("table_first", [True, False], ids=["table-first", "stream-first"])
def test_the_result_does_not_depend_on_which_topic_came_first(
    tmp_path: Path, table_first: bool
) -> None:
    rng = random.Random(7)
    table, stream = _random_inputs(rng)
    end = ("~end", 0, 10_000)  # the table's time passes every stream record
    with TestDriver(_app(left=True, max_wait_ms=100_000), state_dir=str(tmp_path)) as driver:

        def feed_table() -> None:
            for k, v, t in [*table, end]:
                driver.pipe("prices", k, v, timestamp=t)

        if table_first:
            feed_table()
        for k, v, t in stream:
            driver.pipe("clicks", k, v, timestamp=t)
        if not table_first:
            assert driver.output("out") == []  # every record waits for the table
            feed_table()
        want = sorted(((k, [v, _as_of(table, k, t)], t) for k, v, t in stream), key=repr)
        assert _out(driver) == want


def test_waiting_ends_when_the_stream_is_max_wait_ms_past_a_record(tmp_path: Path) -> None:
    with TestDriver(_app(left=True, max_wait_ms=1000), state_dir=str(tmp_path)) as driver:
        driver.pipe("prices", "p", 10, timestamp=1000)
        driver.pipe("clicks", "p", "c1", timestamp=2000)  # the table is at 1000: waits
        driver.pipe("clicks", "q", "c2", timestamp=2999)
        assert _out(driver) == []
        driver.pipe("clicks", "q", "c3", timestamp=3000)  # 1000 past c1: it joins what is known
        assert _out(driver) == [("p", ["c1", 10], 2000)]
        driver.crash()  # the waiting records are in the store, changelogged
        driver.pipe("prices", "q", 5, timestamp=3000)
        assert _out(driver) == sorted(
            [("p", ["c1", 10], 2000), ("q", ["c2", None], 2999), ("q", ["c3", 5], 3000)],
            key=repr,
        )


def test_table_updates_older_than_the_history_are_dropped(tmp_path: Path) -> None:
    with TestDriver(_app(history_ms=1000), state_dir=str(tmp_path)) as driver:
        driver.pipe("prices", "p", 10, timestamp=5000)
        driver.pipe("prices", "p", 7, timestamp=3999)  # older than 5000 - 1000: dropped
        driver.pipe("prices", "p", 8, timestamp=4000)  # just within
        assert driver.metric("eokafka_late_records_total", store="prices", action="dropped") == 1
        driver.pipe("clicks", "p", "c", timestamp=4500)
        driver.pipe("clicks", "p", "old", timestamp=3000)  # older than the history: no match
        assert _out(driver) == [("p", ["c", 8], 4500)]


@pytest.mark.parametrize("left", [False, True], ids=["join", "left_join"])
def test_waiting_records_are_released_when_the_partition_is_idle_by_wall_clock(
    tmp_path: Path, left: bool
) -> None:
    app = _app(left=left, max_wait_ms=1000, release_on_idle_ms=5000)
    with TestDriver(app, start_time_ms=1_000_000, state_dir=str(tmp_path)) as driver:
        driver.pipe("prices", "p", 10, timestamp=1000)
        driver.pipe("clicks", "p", "c1", timestamp=2000)  # the table is at 1000: waits
        driver.pipe("clicks", "q", "c2", timestamp=2500)  # no table value for q at all
        driver.advance_time(4_999)
        driver.commit()
        assert _out(driver) == []  # not idle long enough yet
        driver.advance_time(1)
        driver.commit()
        # idle 5000 ms: stream time 2500 + 5000, so both are more than 1000 behind it
        want = [("p", ["c1", 10], 2000)] + ([("q", ["c2", None], 2500)] if left else [])
        assert _out(driver) == want
        driver.crash()  # the release was committed: never again
        driver.advance_time(20_000)
        driver.commit()
        assert _out(driver) == want


def test_without_release_on_idle_waiting_records_wait_for_data(tmp_path: Path) -> None:
    with TestDriver(_app(left=True, max_wait_ms=1000), state_dir=str(tmp_path)) as driver:
        driver.pipe("prices", "p", 10, timestamp=1000)
        driver.pipe("clicks", "p", "c1", timestamp=2000)
        driver.advance_time(600_000)
        driver.commit()
        assert _out(driver) == []


def test_versioned_join_arguments_are_checked() -> None:
    app = eokafka.App("bad")
    with pytest.raises(TopologyError, match="history_ms"):
        app.table("t", history_ms=0)
    plain = app.table("plain")
    clicks = app.stream("clicks")
    with pytest.raises(TopologyError, match="history_ms"):
        clicks.join(plain, lambda a, b: a, max_wait_ms=10, name="x")
    versioned = app.table("v", history_ms=1000)
    with pytest.raises(TopologyError, match="name="):
        clicks.join(versioned, lambda a, b: a, max_wait_ms=10)
    with pytest.raises(TopologyError, match="give max_wait_ms= too"):
        clicks.join(versioned, lambda a, b: a, name="x", release_on_idle_ms=1000)
    with pytest.raises(TopologyError, match="release_on_idle_ms must be a positive int"):
        clicks.join(versioned, lambda a, b: a, name="x", max_wait_ms=10, release_on_idle_ms=0)
