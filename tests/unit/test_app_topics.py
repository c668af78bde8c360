"""The plan of an app's topics: which to create, with how many partitions, and why."""

from __future__ import annotations

import pytest

import eokafka
from eokafka import serdes
from eokafka.app_topics import BROKER_DEFAULT, app_topics, default_partitions, plan_topics
from eokafka.errors import TopologyError

S, J = serdes.String(), serdes.Json()


def _joined() -> eokafka.App:
    """orders and customers share a store (a join); clicks stands alone; two outputs."""
    app = eokafka.App("plan")
    customers = app.table("customers", key_serde=S, value_serde=J)
    orders = app.stream("orders", key_serde=S, value_serde=J)
    orders.join(customers, lambda o, c: {**o, "customer": c}).to("enriched", value_serde=J)

    @app.processor("clicks", outputs=["click-counts"])
    def count(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
        ctx.send("click-counts", value=b"1")

    return app


def _rekeyed() -> eokafka.App:
    """A repartition topic (internal) follows its source; not in the plan."""
    app = eokafka.App("rekey")
    stream = app.stream("words", key_serde=S, value_serde=S)
    stream.map(lambda k, v: (v, v)).group_by_key(name="by-word").count(name="n").to(
        "word-counts", value_serde=J
    )
    return app


def test_the_app_topics_are_its_inputs_and_declared_outputs() -> None:
    assert app_topics(_joined().topology) == {
        "customers": "input",
        "orders": "input",
        "clicks": "input",
        "enriched": "output",
        "click-counts": "output",
    }
    assert app_topics(_rekeyed().topology) == {"words": "input", "word-counts": "output"}


def test_nothing_exists_and_no_count_is_given_the_broker_decides() -> None:
    plan = plan_topics(_joined().topology, {})
    assert set(plan.create.values()) == {BROKER_DEFAULT}
    assert all("give --partitions N" in why for why in plan.why.values())
    assert default_partitions(plan) == BROKER_DEFAULT


def test_a_stated_count_goes_to_every_new_topic() -> None:
    plan = plan_topics(_joined().topology, {}, partitions=6)
    assert plan.create == dict.fromkeys(app_topics(_joined().topology), 6)
    assert set(plan.why.values()) == {"--partitions"}
    assert default_partitions(plan) == 6


def test_a_missing_co_partitioned_input_gets_its_partners_count() -> None:
    plan = plan_topics(_joined().topology, {"customers": 8, "clicks": 3})
    assert plan.existing == {"customers": 8, "clicks": 3}
    assert plan.create["orders"] == 8
    assert plan.why["orders"] == "like customers, with which it shares a store"
    # The outputs: the inputs differ (8 and 3), so the broker's default, and why.
    assert plan.create["enriched"] == BROKER_DEFAULT
    assert "the app's inputs differ" in plan.why["enriched"]


def test_the_inputs_count_goes_to_new_outputs() -> None:
    plan = plan_topics(_joined().topology, {"customers": 4, "orders": 4, "clicks": 4})
    assert plan.create == {"enriched": 4, "click-counts": 4}
    assert set(plan.why.values()) == {"as the app's existing inputs"}
    assert default_partitions(plan) == 4


def test_co_partitioned_inputs_that_differ_are_refused() -> None:
    with pytest.raises(TopologyError) as raised:
        plan_topics(_joined().topology, {"customers": 8, "orders": 4})
    assert "customers (8 partitions), orders (4 partitions) share a store" in str(raised.value)


def test_a_stated_count_that_breaks_co_partitioning_is_refused() -> None:
    with pytest.raises(TopologyError) as raised:
        plan_topics(_joined().topology, {"customers": 8}, partitions=4)
    assert "--partitions 4: input topic orders must have 8 partitions, like customers" in str(
        raised.value
    )
