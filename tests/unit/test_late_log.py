"""A late record is logged once, with a count of the windows it missed, rate-limited.

The pipeline below has two windowed aggregations of one stream (branches): a record late
for both is one line naming both stores and how many windows of each had closed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import eokafka
from eokafka import serdes, windows
from eokafka.dsl.graph import Root
from eokafka.logs import Throttle
from eokafka.testing import TestDriver

S, J, B = serdes.String(), serdes.Json(), serdes.Bytes()


def _app() -> eokafka.App:
    app = eokafka.App("late-log")
    stream = app.stream("in", key_serde=S, value_serde=J)
    hopping = windows.Hopping(size_ms=100, advance_ms=50)  # a record is in 2 windows
    tumbling = windows.Tumbling(100)
    for window, name in ((hopping, "hop"), (tumbling, "tum")):
        counted = stream.group_by_key().window(window, late="drop").count(name=name)
        counted.to(f"{name}-out", value_serde=J)
    return app


def _late_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "late record" in r.getMessage()]


def test_one_line_per_late_record_with_its_windows_then_rate_limited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = _app()
    [source] = app.topology.sources
    root = source.fn.__self__  # the pipeline's processor
    assert isinstance(root, Root)
    now = [0.0]
    root.late.throttle = Throttle(clock=lambda: now[0])
    caplog.set_level(logging.WARNING, "eokafka.windows")
    with TestDriver(app, partitions=1, state_dir=str(tmp_path)) as driver:
        for ts in (60, 400):  # 400 closes every window holding 60
            driver.pipe("in", "k", 1, timestamp=ts)
        driver.pipe("in", "k", 1, timestamp=60)  # late for both stores: offset 2
        [line] = _late_lines(caplog)
        assert line.startswith("late record in[0]@2 (3 windows): ")
        assert "late for window store 'hop': event time 60 is past the close of 2 windows " \
            "at stream time 400, dropped" in line
        assert "late for window store 'tum': event time 60 is past the close of 1 window " \
            "at stream time 400, dropped" in line
        driver.pipe("in", "k", 1, timestamp=70)  # held back: same stores within 10 s
        assert len(_late_lines(caplog)) == 1
        now[0] += 10
        driver.pipe("in", "k", 1, timestamp=80)
        lines = _late_lines(caplog)
        assert len(lines) == 2
        assert lines[1].startswith("late record in[0]@4 (3 windows)")
        assert lines[1].endswith("(1 more late records in the last 10s)")
        assert driver.metric("eokafka_late_records_total", store="hop", action="dropped") == 3
