"""Foreign-key table-table joins (``table.join(other, fn, foreign_key=...)``), run by the
worker itself through eokafka.testing, checked against tests/joins_reference.py."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

import eokafka
from eokafka import serdes
from eokafka.errors import TopologyError
from eokafka.testing import TestDriver
from tests.joins_reference import expected_fk_join

S, J = serdes.String(), serdes.Json()
PARTITIONS = {"orders": 3, "customers": 2}


def _fk(order: dict[str, Any]) -> Any:
    return order["customer"]


def _joiner(order: dict[str, Any], customer: Any) -> list[Any]:
    return [order["n"], customer]


def _app(app_id: str, kind: str) -> eokafka.App:
    app = eokafka.App(app_id)
    orders = app.table("orders", key_serde=S, value_serde=J)
    customers = app.table("customers", key_serde=S, value_serde=J)
    joined = getattr(orders, kind)(customers, _joiner, name="enriched", foreign_key=_fk)
    joined.to("out", key_serde=S, value_serde=J)
    return app


def _last(driver: TestDriver) -> dict[str, Any]:
    """The joined table as its updates say: the last update per key, deletes left out."""
    last = {r.key: r.value for r in driver.output("out", key_serde=S, value_serde=J)}
    return {k: v for k, v in last.items() if v is not None}


@pytest.mark.parametrize(
    "kind, want",
    [
        (
            "join",
            [
                ("o1", [1, "ann"]),  # o1 -> c1
                ("o2", [2, "ann"]),  # o2 -> c1
                ("o1", [1, "ann2"]),  # c1 changes: both its orders
                ("o2", [2, "ann2"]),
                ("o1", [3, "bob"]),  # o1 moves to c2 (c1 no longer updates it)
                ("o2", None),  # c1 deleted
                ("o3", None),  # o3 names no customer
                ("o1", None),  # o1 deleted
            ],
        ),
        (
            "left_join",
            [
                ("o1", [1, "ann"]),
                ("o2", [2, "ann"]),
                ("o1", [1, "ann2"]),
                ("o2", [2, "ann2"]),
                ("o1", [3, "bob"]),
                ("o2", [2, None]),
                ("o3", [4, None]),
                ("o4", [5, None]),  # o4 names c9, not there
                ("o1", None),
            ],
        ),
    ],
)
def test_foreign_key_join_follows_every_change_of_either_table(
    tmp_path: Path, kind: str, want: list[tuple[str, Any]]
) -> None:
    app = _app(f"fk-{kind}", kind)
    with TestDriver(app, partitions=PARTITIONS, state_dir=str(tmp_path)) as driver:
        driver.pipe("customers", "c1", "ann")
        driver.pipe("customers", "c2", "bob")
        driver.pipe("orders", "o1", {"n": 1, "customer": "c1"})
        driver.pipe("orders", "o2", {"n": 2, "customer": "c1"})
        driver.pipe("customers", "c1", "ann2")
        driver.pipe("orders", "o1", {"n": 3, "customer": "c2"})
        driver.pipe("customers", "c1", None)
        driver.pipe("orders", "o3", {"n": 4, "customer": None})
        if kind == "left_join":
            driver.pipe("orders", "o4", {"n": 5, "customer": "c9"})
        driver.pipe("orders", "o1", None)
        got = [(r.key, r.value) for r in driver.output("out", key_serde=S, value_serde=J)]
        assert got == want
        assert driver.store("enriched") == {k: v for k, v in dict(want).items() if v}
    text = app.topology.describe(f"fk-{kind}")
    assert "subscription-repartition" in text and "response-repartition" in text


@pytest.mark.parametrize("kind", ["join", "left_join"])
def test_foreign_key_join_of_random_updates_is_the_join_of_the_final_tables(
    tmp_path: Path, kind: str
) -> None:
    rng = random.Random(f"fk-{kind}")
    app = _app(f"fk-random-{kind}", kind)
    reference_kind = "left" if kind == "left_join" else "inner"
    left: dict[str, Any] = {}
    right: dict[str, Any] = {}
    with TestDriver(app, partitions=PARTITIONS, state_dir=str(tmp_path)) as driver:
        for i in range(400):
            commit = rng.random() < 0.3  # several updates in one transaction too
            if rng.random() < 0.6:
                key = f"o{rng.randint(0, 14)}"
                customer = None if rng.random() < 0.1 else f"c{rng.randint(0, 6)}"
                value = None if rng.random() < 0.15 else {"n": i, "customer": customer}
                driver.pipe("orders", key, value, commit=commit)
                target = left
            else:
                key = f"c{rng.randint(0, 6)}"
                value = None if rng.random() < 0.2 else f"name{i}"
                driver.pipe("customers", key, value, commit=commit)
                target = right
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
        driver.commit()
        want = expected_fk_join(left, right, _fk, _joiner, reference_kind)
        assert _last(driver) == want
        assert driver.store("enriched") == want
        driver.crash()  # restored from the changelogs, the join goes on where it was
        driver.pipe("customers", "c0", "again")
        right["c0"] = "again"
        want = expected_fk_join(left, right, _fk, _joiner, reference_kind)
        assert _last(driver) == want


def test_foreign_key_join_refuses_what_it_cannot_do() -> None:
    app = eokafka.App("fk-bad")
    orders = app.table("orders", key_serde=S, value_serde=J)
    customers = app.table("customers", key_serde=S, value_serde=J)
    with pytest.raises(TopologyError, match="outer_join.*foreign_key.*join or left_join"):
        orders.outer_join(customers, _joiner, name="x", foreign_key=_fk)
    with pytest.raises(TopologyError, match="foreign_key= must be a function"):
        orders.join(customers, _joiner, name="x", foreign_key="customer")  # type: ignore[arg-type]
    with pytest.raises(TopologyError, match="name="):
        orders.join(customers.map_values(str), _joiner, name="x", foreign_key=_fk)
    versioned = app.table("v", key_serde=S, value_serde=J, history_ms=1000)
    with pytest.raises(TopologyError, match="versioned"):
        orders.join(versioned, _joiner, name="y", foreign_key=_fk)
    orders.join(customers, _joiner, name="z", foreign_key=_fk)
    with pytest.raises(TopologyError, match="already"):
        orders.left_join(customers, _joiner, name="z", foreign_key=_fk)


def test_foreign_key_join_results_carry_the_later_of_the_two_timestamps(tmp_path: Path) -> None:
    app = _app("fk-time", "left_join")
    with TestDriver(app, partitions=PARTITIONS, state_dir=str(tmp_path)) as driver:
        driver.pipe("customers", "c1", "ann", timestamp=5000)
        driver.pipe("orders", "o1", {"n": 1, "customer": "c1"}, timestamp=1000)  # 5000
        driver.pipe("orders", "o1", {"n": 2, "customer": "c1"}, timestamp=7000)  # 7000
        driver.pipe("customers", "c1", "ann2", timestamp=6000)  # o1's 7000 is later
        driver.pipe("customers", "c1", "ann3", timestamp=8000)  # 8000
        driver.pipe("orders", "o2", {"n": 3, "customer": "c1"}, timestamp=2000)  # c1's 8000
        got = [(r.key, r.value, r.timestamp) for r in driver.output("out", key_serde=S)]
    assert [(k, json.loads(v), t) for k, v, t in got] == [
        ("o1", [1, "ann"], 5000),
        ("o1", [2, "ann"], 7000),
        ("o1", [2, "ann2"], 7000),
        ("o1", [2, "ann3"], 8000),
        ("o2", [3, "ann3"], 8000),
    ]


def test_a_table_joins_itself_by_foreign_key(tmp_path: Path) -> None:
    app = eokafka.App("fk-self")
    staff = app.table("staff", key_serde=S, value_serde=J)
    staff.left_join(
        staff,
        lambda e, boss: [e["name"], boss and boss["name"]],
        name="bosses",
        foreign_key=lambda e: e["boss"],
    )
    with TestDriver(app, partitions=3, state_dir=str(tmp_path)) as driver:
        driver.pipe("staff", "e1", {"name": "ann", "boss": None})
        driver.pipe("staff", "e2", {"name": "bob", "boss": "e1"})
        driver.pipe("staff", "e3", {"name": "cy", "boss": "e2"})
        driver.pipe("staff", "e1", {"name": "ANN", "boss": None})
        driver.pipe("staff", "e2", None)
        assert driver.store("bosses") == {"e1": ["ANN", None], "e3": ["cy", None]}
