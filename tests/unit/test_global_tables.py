"""Global tables (``app.global_table``) joined from streams, run by the worker itself through
eokafka.testing: every partition of the table's topic read by the worker, restored before any
record is processed, kept current between batches; the lookup key computed per record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import eokafka
from eokafka import JoinWindows, serdes
from eokafka.describe import render
from eokafka.errors import MissingTopicError, TopologyError
from eokafka.testing import TestDriver
from eokafka.topology import topology_graph

S, J = serdes.String(), serdes.Json()


def _app(left: bool = False) -> eokafka.App:
    app = eokafka.App("gt")
    orders = app.stream("orders", key_serde=S, value_serde=J)
    customers = app.global_table("customers", key_serde=S, value_serde=J)
    join = orders.left_join if left else orders.join
    join(customers, lambda o, c: [o["id"], c and c["name"]], key=lambda k, v: v["customer"]).to(
        "out", key_serde=S, value_serde=J
    )
    return app


def _out(driver: TestDriver) -> list[tuple[str, Any]]:
    return [(r.key, r.value) for r in driver.output("out", key_serde=S, value_serde=J)]


def test_a_stream_joins_a_global_table_by_a_key_computed_from_each_record(
    tmp_path: Path,
) -> None:
    partitions = {"orders": 2, "customers": 3}
    with TestDriver(_app(), partitions=partitions, state_dir=str(tmp_path)) as driver:
        for c in range(6):  # every partition of the table, whatever the stream's count
            driver.write("customers", f"c{c}", {"name": f"n{c}"})
        assert {driver.cluster.partition_for("customers", f"c{c}".encode()) for c in range(6)} \
            == {0, 1, 2}
        for i in range(12):
            driver.pipe("orders", f"o{i}", {"id": i, "customer": f"c{i % 7}"})
        want = [(f"o{i}", [i, f"n{i % 7}"]) for i in range(12) if i % 7 != 6]
        assert sorted(_out(driver)) == sorted(want)
        assert driver.global_table("customers") == {f"c{c}": {"name": f"n{c}"} for c in range(6)}
        assert driver.metric("eokafka_global_table_keys", table="customers") == 6
        assert driver.metric("eokafka_global_table_records_total", table="customers") == 6


def test_updates_and_tombstones_are_seen_by_later_records(tmp_path: Path) -> None:
    with TestDriver(_app(left=True), state_dir=str(tmp_path)) as driver:
        driver.write("customers", "c1", {"name": "ann"})
        driver.pipe("orders", "o1", {"id": 1, "customer": "c1"})
        driver.write("customers", "c1", {"name": "anne"})
        driver.pipe("orders", "o2", {"id": 2, "customer": "c1"})
        driver.write("customers", "c1", None)  # a tombstone deletes
        driver.pipe("orders", "o3", {"id": 3, "customer": "c1"})
        driver.pipe("orders", "o4", {"id": 4, "customer": None})  # no key: left gives None
        assert _out(driver) == [
            ("o1", [1, "ann"]), ("o2", [2, "anne"]), ("o3", [3, None]), ("o4", [4, None]),
        ]  # fmt: skip


def test_a_new_worker_restores_the_whole_table_before_it_processes(tmp_path: Path) -> None:
    with TestDriver(_app(), state_dir=str(tmp_path), partitions={"customers": 3}) as driver:
        driver.crash()
        for c in range(30):
            driver.write("customers", f"c{c}", {"name": f"n{c}"})
        driver.write("orders", "o1", {"id": 1, "customer": "c29"})
        driver.crash()  # the new worker reads the table to its end at start
        assert len(driver.global_table("customers")) == 30
        driver.commit()
        assert _out(driver) == [("o1", [1, "n29"])]


def test_a_processor_reads_a_global_table_through_ctx_store_and_cannot_write_it(
    tmp_path: Path,
) -> None:
    app = eokafka.App("gtp")
    app.global_table("rates", key_serde=S, value_serde=J)
    seen: list[Any] = []

    @app.processor("prices", key_serde=S, value_serde=J)
    def price(record: Any, ctx: Any) -> None:
        rates = ctx.store("rates")
        seen.append(rates.get("eur"))
        try:
            rates.put("eur", 2)
        except TopologyError as exc:
            seen.append(str(exc))

    with TestDriver(app, state_dir=str(tmp_path)) as driver:
        driver.write("rates", "eur", 1.5)
        driver.pipe("prices", "p", 10)
        assert seen[0] == 1.5
        assert "global table 'rates' is read-only" in seen[1]
        assert driver.global_table("rates") == {"eur": 1.5}


def test_the_worker_names_a_missing_global_table_topic(tmp_path: Path) -> None:
    with TestDriver(_app(), state_dir=str(tmp_path), create_topics=False) as driver:
        del driver.cluster.logs["customers"]
        with pytest.raises(MissingTopicError, match="global table 'customers'.*'customers'"):
            driver.crash()


def test_describe_draws_the_global_table_and_its_join() -> None:
    text = _app().topology.describe("gt")
    assert "global table customers <- topic customers (in memory, all partitions" in text
    assert "join(global customers)" in text
    assert "reads global table customers" in text
    assert "customers-changelog" not in text
    graph = topology_graph(_app().topology, "gt")
    assert '"customers\\n(global-table)"' in render(graph, "dot")
    assert ":::globaltable" in render(graph, "mermaid")


def test_a_processor_may_not_declare_a_global_table_as_its_own_store() -> None:
    app = eokafka.App("gtdecl")
    app.global_table("rates")
    app.processor("prices", stores=["rates"])(lambda record, ctx: None)
    with pytest.raises(TopologyError, match="global table: read it with ctx.store"):
        app.topology.validate()


@pytest.mark.parametrize(
    "declare, message",
    [
        (lambda app, s, g, t: app.global_table("g2", history_ms=1000), "history_ms"),
        (lambda app, s, g, t: s.join(g, lambda a, b: a), "key="),
        (lambda app, s, g, t: s.join(t, lambda a, b: a, key=lambda k, v: v), "app.global_table"),
        (lambda app, s, g, t: s.join(g, lambda a, b: a, key=lambda k, v: v,
                                     window=JoinWindows(1, 1)), "window"),
        (lambda app, s, g, t: s.outer_join(g, lambda a, b: a), "left_join"),
        (lambda app, s, g, t: t.join(g, lambda a, b: a, name="x"), "stream.join"),
        (lambda app, s, g, t: app.stream("g"), "global table 'g'"),
        (lambda app, s, g, t: app.global_table("s"), "already been registered"),
        (lambda app, s, g, t: app.global_table("g3", name="t"), "store 't'"),
        (lambda app, s, g, t: s.merge(g), "merge takes streams"),
    ],
)
def test_clear_errors_name_what_to_use(declare: Any, message: str) -> None:
    app = eokafka.App("gterr")
    s = app.stream("s", key_serde=S, value_serde=J)
    g = app.global_table("g", key_serde=S, value_serde=J)
    t = app.table("t", key_serde=S, value_serde=J)
    with pytest.raises(TopologyError, match=message):
        declare(app, s, g, t)


def test_the_topic_plan_creates_a_missing_global_table_topic_with_its_own_role() -> None:
    from eokafka.app_topics import plan_topics

    plan = plan_topics(_app().topology, {"orders": 2, "customers": None, "out": 2})
    assert plan.roles["customers"] == "global table"
    assert plan.create == {"customers": 2}  # as the app's existing inputs
