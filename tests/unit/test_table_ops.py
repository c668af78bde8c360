"""Tables that transform and join: ``filter``, ``map_values``, ``to_stream`` and table-table
``join``/``left_join``/``outer_join``, run by the worker itself through eokafka.testing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import eokafka
from eokafka import serdes
from eokafka.errors import TopologyError
from eokafka.testing import TestDriver

S, J = serdes.String(), serdes.Json()


def _out(driver: TestDriver, topic: str = "out") -> list[tuple[str, Any]]:
    return [(r.key, r.value) for r in driver.output(topic, key_serde=S, value_serde=J)]


def test_filter_and_map_values_send_deletes_for_what_drops_out(tmp_path: Path) -> None:
    app = eokafka.App("tops")
    users = app.table("users", key_serde=S, value_serde=J)
    adults = users.filter(lambda k, v: v["age"] >= 18, name="adults")
    adults.map_values(lambda v: v["name"].upper()).to("out", key_serde=S, value_serde=J)
    clicks = app.stream("clicks", key_serde=S, value_serde=J)
    clicks.left_join(adults, lambda c, u: [c, u and u["name"]]).to(
        "joined", key_serde=S, value_serde=J
    )
    with TestDriver(app, state_dir=str(tmp_path)) as driver:
        driver.pipe("users", "a", {"name": "ann", "age": 30})
        driver.pipe("users", "b", {"name": "bob", "age": 12})
        driver.pipe("users", "a", {"name": "ann", "age": 17})  # no longer passes: a delete
        driver.pipe("users", "c", {"name": "cy", "age": 40})
        driver.pipe("users", "c", None)
        assert _out(driver) == [("a", "ANN"), ("b", None), ("a", None), ("c", "CY"), ("c", None)]
        assert driver.store("adults") == {}
        driver.pipe("users", "d", {"name": "di", "age": 50})
        driver.pipe("clicks", "d", 1)
        driver.pipe("clicks", "b", 2)
        assert _out(driver, "joined") == [("d", [1, "di"]), ("b", [2, None])]


@pytest.mark.parametrize(
    "kind, want",
    [
        ("join", {"a": ["l1", "r1"]}),
        ("left_join", {"a": ["l1", "r1"], "b": ["l2", None]}),
        ("outer_join", {"a": ["l1", "r1"], "b": ["l2", None], "c": [None, "r3"]}),
    ],
)
def test_table_table_joins_keep_the_joined_table_current(
    tmp_path: Path, kind: str, want: dict[str, Any]
) -> None:
    app = eokafka.App("tt")
    left = app.table("left", key_serde=S, value_serde=J)
    right = app.table("right", key_serde=S, value_serde=J)
    joined = getattr(left, kind)(right, lambda lv, rv: [lv, rv], name="joined")
    joined.to("out", key_serde=S, value_serde=J)
    with TestDriver(app, partitions=2, state_dir=str(tmp_path)) as driver:
        for topic, key, value in [
            ("left", "a", "l0"),
            ("right", "a", "r1"),
            ("left", "a", "l1"),
            ("left", "b", "l2"),
            ("right", "c", "r3"),
            ("right", "d", "r4"),
            ("right", "d", None),
        ]:
            driver.pipe(topic, key, value)
        assert driver.store("joined") == want
        last = dict(_out(driver))  # the last update per key is the joined table
        assert {k: v for k, v in last.items() if v is not None} == want
    assert kind in app.topology.describe("tt")


def test_table_operations_refuse_what_they_cannot_do() -> None:
    app = eokafka.App("bad")
    t = app.table("t", key_serde=S, value_serde=J)
    derived = t.map_values(lambda v: v)
    with pytest.raises(TopologyError, match="name="):
        app.stream("s", key_serde=S).join(derived, lambda a, b: a)
    with pytest.raises(TopologyError, match="name="):
        t.join(derived, lambda a, b: a, name="j0")  # derived: not in a store
    with pytest.raises(TopologyError, match="Table"):
        t.join(app.stream("x"), lambda a, b: a, name="j")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["join", "left_join", "outer_join"])
def test_table_table_join_results_carry_the_later_of_the_two_timestamps(
    tmp_path: Path, kind: str
) -> None:
    app = eokafka.App("tt-time")
    left = app.table("left", key_serde=S, value_serde=J)
    right = app.table("right", key_serde=S, value_serde=J)
    getattr(left, kind)(right, lambda lv, rv: [lv, rv], name="joined").to(
        "out", key_serde=S, value_serde=J
    )
    with TestDriver(app, state_dir=str(tmp_path)) as driver:
        driver.pipe("right", "a", "r1", timestamp=3000)
        driver.pipe("left", "a", "l1", timestamp=1000)  # joins r1 of t=3000: t=3000
        driver.pipe("left", "a", "l2", timestamp=5000)  # the later one now: t=5000
        driver.pipe("right", "a", "r2", timestamp=4000)  # l2 of t=5000 stays the later
        driver.pipe("right", "a", None, timestamp=6000)  # the delete's own time, the later
        got = [(r.value, r.timestamp) for r in driver.output("out", key_serde=S, value_serde=J)]
    want = {
        "join": [
            (None, 3000),  # r1 alone joins nothing: a delete at its own time
            (["l1", "r1"], 3000),
            (["l2", "r1"], 5000),
            (["l2", "r2"], 5000),
            (None, 6000),
        ],
        "left_join": [
            (None, 3000),
            (["l1", "r1"], 3000),
            (["l2", "r1"], 5000),
            (["l2", "r2"], 5000),
            (["l2", None], 6000),
        ],
    }
    want["outer_join"] = [([None, "r1"], 3000), *want["left_join"][1:]]
    assert got == want[kind]
