"""``merge`` and ``split`` in the DSL, run by the worker itself through eokafka.testing."""

from __future__ import annotations

from pathlib import Path

import pytest

import eokafka
from eokafka import serdes
from eokafka.errors import TopologyError
from eokafka.testing import TestDriver

S, J = serdes.String(), serdes.Json()


def _values(driver: TestDriver, topic: str) -> list[object]:
    return [r.value for r in driver.output(topic, value_serde=J)]


def test_merge_sends_the_records_of_every_stream_on(tmp_path: Path) -> None:
    app = eokafka.App("merge")
    a = app.stream("a", key_serde=S, value_serde=J)
    b = app.stream("b", key_serde=S, value_serde=J).map_values(lambda v: v * 10)
    c = app.stream("c", key_serde=S, value_serde=J)
    a.merge(b, c).map_values(lambda v: v + 1).to("out", value_serde=J)
    with TestDriver(app, state_dir=str(tmp_path)) as driver:
        driver.pipe("a", "k", 1)
        driver.pipe("b", "k", 2)
        driver.pipe("c", "k", 3)
        assert _values(driver, "out") == [2, 21, 4]
    assert "merge" in app.topology.describe("merge")


def test_a_merged_stream_aggregates_through_one_repartition(tmp_path: Path) -> None:
    app = eokafka.App("merge-count")
    a = app.stream("a", key_serde=S, value_serde=J)
    b = app.stream("b", key_serde=S, value_serde=J)
    a.merge(b).group_by_key().count(name="counts").to("out", value_serde=J)
    with TestDriver(app, partitions=2, state_dir=str(tmp_path)) as driver:
        for topic, key in [("a", "x"), ("b", "x"), ("b", "y"), ("a", "x")]:
            driver.pipe(topic, key, 0)
        assert driver.store("counts") == {"x": 3, "y": 1}
    assert "merge-count-counts-repartition" in app.topology.internal_topics


def test_split_sends_each_record_to_the_first_branch_that_matches(tmp_path: Path) -> None:
    app = eokafka.App("split")
    calls: list[int] = []

    def big(k: str, v: int) -> bool:
        calls.append(v)
        return v >= 100

    branches = app.stream("in", key_serde=S, value_serde=J).split(
        {"big": big, "even": lambda k, v: v % 2 == 0}, default="rest"
    )
    assert list(branches) == ["big", "even", "rest"]
    for name, stream in branches.items():
        stream.to(f"out-{name}", value_serde=J)
    with TestDriver(app, state_dir=str(tmp_path)) as driver:
        for v in [1, 2, 200, 3, 101, 4]:
            driver.pipe("in", "k", v)
        assert _values(driver, "out-big") == [200, 101]
        assert _values(driver, "out-even") == [2, 4]  # 200 went to "big" only
        assert _values(driver, "out-rest") == [1, 3]
    assert calls == [1, 2, 200, 3, 101, 4]  # each predicate once per record at most
    text = app.topology.describe("split")
    assert "split" in text and "branch(big)" in text and "branch(rest)" in text


def test_split_without_default_drops_what_matches_no_branch(tmp_path: Path) -> None:
    app = eokafka.App("split2")
    branches = app.stream("in", key_serde=S, value_serde=J).split({"pos": lambda k, v: v > 0})
    branches["pos"].to("out", value_serde=J)
    with TestDriver(app, state_dir=str(tmp_path)) as driver:
        for v in [-1, 5, 0, 7]:
            driver.pipe("in", "k", v)
        assert _values(driver, "out") == [5, 7]


def test_split_and_merge_refuse_what_they_cannot_do() -> None:
    app = eokafka.App("bad")
    s = app.stream("in", key_serde=S, value_serde=J)
    with pytest.raises(TopologyError, match="at least one branch"):
        s.split({})
    with pytest.raises(TopologyError, match="default"):
        s.split({"a": lambda k, v: True}, default="a")
    with pytest.raises(TopologyError, match="callable"):
        s.split({"a": 5})  # type: ignore[dict-item]
    with pytest.raises(TopologyError, match="table"):
        s.merge(app.table("t"))  # type: ignore[arg-type]
    other = eokafka.App("other").stream("x")
    with pytest.raises(TopologyError, match="another app"):
        s.merge(other)
