"""Windows that close without new data (``window(close_on_idle_ms=)``) through the test
driver: the driver's wall clock makes a partition idle; without the option, never."""

from __future__ import annotations

from pathlib import Path

import pytest

import eokafka
from eokafka import serdes, windows
from eokafka.errors import TopologyError
from eokafka.testing import TestDriver
from eokafka.windows import WindowedSerde

S, J = serdes.String(), serdes.Json()


def _app(idle: int | None, timestamp: bool = False) -> eokafka.App:
    app = eokafka.App("idle-windows")

    def event_time(record: eokafka.Record) -> int:
        return int(record.value["ts"])

    (
        app.stream("in", key_serde=S, value_serde=J, timestamp=event_time if timestamp else None)
        .group_by_key()
        .window(windows.Tumbling(1_000), close_on_idle_ms=idle)
        .count(name="c", emit="final")
        .to("out", value_serde=J)
    )
    return app


def _finals(driver: TestDriver) -> list[tuple[tuple[str, int, int], int, int]]:
    out = driver.output("out", key_serde=WindowedSerde(S), value_serde=J)
    return [((r.key.key, r.key.start, r.key.end), r.value, r.timestamp) for r in out]


@pytest.mark.parametrize("timestamp", [False, True], ids=["record-time", "extractor"])
def test_an_idle_partition_closes_its_windows_by_wall_clock(
    tmp_path: Path, timestamp: bool
) -> None:
    with TestDriver(_app(5_000, timestamp), partitions=2, start_time_ms=1_000_000,
                    state_dir=str(tmp_path)) as driver:  # fmt: skip
        for key, ts in [("a", 100), ("a", 200), ("b", 1_500)]:
            driver.pipe("in", key, {"ts": ts}, timestamp=ts, partition=0)
        driver.pipe("in", "c", {"ts": 300}, timestamp=300, partition=1)
        assert _finals(driver) == [(("a", 0, 1_000), 2, 1_500)]  # closed by data
        driver.advance_time(4_999)
        driver.commit()
        assert len(_finals(driver)) == 1  # not idle long enough yet
        driver.advance_time(1)
        driver.commit()
        # 5000 ms idle: stream time 1500 + 5000 on partition 0, 300 + 5000 on partition 1
        assert sorted(_finals(driver)[1:]) == [
            (("b", 1_000, 2_000), 1, 6_500), (("c", 0, 1_000), 1, 5_300)
        ]
        driver.crash()  # the closes were committed: never again
        driver.advance_time(20_000)
        driver.commit()
        assert len(_finals(driver)) == 3
        # a record after the idle advance is late (the trade-off): dropped, counted
        driver.pipe("in", "b", {"ts": 1_600}, timestamp=1_600, partition=0)
        assert driver.metric("eokafka_late_records_total", store="c", action="dropped") == 1


def test_an_aborted_idle_close_happens_again(tmp_path: Path) -> None:
    with TestDriver(_app(1_000), start_time_ms=50_000, state_dir=str(tmp_path)) as driver:
        driver.pipe("in", "a", {"ts": 10}, timestamp=10)
        driver.advance_time(1_500)
        assert _finals(driver) == []
        assert len(driver.output("out", include_open=True)) == 1
        driver.abort()
        driver.advance_time(10)
        driver.commit()
        assert _finals(driver) == [(("a", 0, 1_000), 1, 1_520)]


def test_without_the_option_windows_wait_for_data(tmp_path: Path) -> None:
    with TestDriver(_app(None), start_time_ms=50_000, state_dir=str(tmp_path)) as driver:
        driver.pipe("in", "a", {"ts": 10}, timestamp=10)
        for _ in range(5):
            driver.advance_time(3_600_000)
            driver.commit()
        assert _finals(driver) == []
        driver.pipe("in", "a", {"ts": 1_000}, timestamp=1_000)
        assert _finals(driver) == [(("a", 0, 1_000), 1, 1_000)]


@pytest.mark.parametrize("bad", [0, -5, 1.5, "1s"])
def test_a_bad_close_on_idle_ms_is_refused(bad: object) -> None:
    with pytest.raises(TopologyError, match="close_on_idle_ms must be a positive int"):
        _app(bad)  # type: ignore[arg-type]


def test_describe_shows_the_idle_close() -> None:
    text = _app(5_000).topology.describe("idle-windows")
    assert "window count(c, final, close on idle 5000 ms)" in text
    assert "close on idle" not in _app(None).topology.describe("idle-windows")
