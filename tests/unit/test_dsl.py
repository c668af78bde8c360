"""The DSL compiles onto plain processors: which ones, on which topics, with which stores.

Behaviour is checked through eokafka.testing: the worker itself runs the topology over
in-memory Kafka clients, repartition hops included, so the serdes of both sides of a hop
must agree.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

import eokafka
from eokafka import serdes
from eokafka.errors import TopologyError
from eokafka.testing import TestDriver

S, J, B = serdes.String(), serdes.Json(), serdes.Bytes()
PARTITIONS = 3


class Driver(TestDriver):
    """The test driver with this file's shorthands: bytes in, decoded (key, value) out."""

    __test__ = False

    def __init__(self, app: eokafka.App, tmp: Path) -> None:
        super().__init__(app, partitions=PARTITIONS, state_dir=str(tmp))

    def feed(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self.pipe(topic, key, value, key_serde=B, value_serde=B)

    def decoded(self, topic: str, key: Any = S, value: Any = J) -> list[tuple[Any, Any]]:
        return [(r.key, r.value) for r in self.output(topic, key_serde=key, value_serde=value)]

    def hops(self, topic: str) -> int:
        """Records that crossed a repartition topic (committed)."""
        return len(self.output(topic))

    def dropped(self) -> dict[str, float]:
        [family] = self.metrics.dropped.collect()
        return {s.labels["reason"]: s.value for s in family.samples if s.name.endswith("_total")}


def _sources(app: eokafka.App) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    return {t: [(s.name, s.stores) for s in ss] for t, ss in app.topology.by_topic().items()}


# -- stateless chains -------------------------------------------------------------------


def test_a_stateless_chain_is_one_processor_on_its_source(tmp_path: Path) -> None:
    app = eokafka.App("chain")
    seen: list[tuple[str, str]] = []
    (
        app.stream("in", key_serde=S, value_serde=S)
        .flat_map(lambda k, v: [(w, w) for w in v.split()])
        .filter(lambda k, v: len(v) > 2)
        .map_values(str.lower)
        .peek(lambda k, v: seen.append((k, v)))
        .map(lambda k, v: (k.upper(), {"word": v, "len": len(v)}))
        .to("out", key_serde=S, value_serde=J)
    )
    assert app.topology.topics == ["in"]
    assert app.topology.internal_topics == {}
    [source] = app.topology.sources
    assert source.stores == ()
    assert source.name == "stream > flat_map > filter > map_values > peek > map > to(out)"

    driver = Driver(app, tmp_path)
    driver.feed("in", b"s1", b"The Big cat is ON a MAT")
    assert seen == [("The", "the"), ("Big", "big"), ("cat", "cat"), ("MAT", "mat")]
    assert driver.decoded("out") == [
        ("THE", {"word": "the", "len": 3}),
        ("BIG", {"word": "big", "len": 3}),
        ("CAT", {"word": "cat", "len": 3}),
        ("MAT", {"word": "mat", "len": 3}),
    ]


def test_branches_share_the_processor_and_each_see_every_record(tmp_path: Path) -> None:
    app = eokafka.App("branches")
    numbers = app.stream("in", key_serde=S, value_serde=J)
    numbers.filter(lambda k, v: v % 2 == 0).to("even", value_serde=J)
    big = numbers.map_values(lambda v: v * 10)
    big.to("tens", value_serde=J)
    big.filter(lambda k, v: v > 30).to("big", value_serde=J)
    assert len(app.topology.sources) == 1
    assert app.topology.sources[0].name == (
        "stream > [filter > to(even) | map_values > [to(tens) | filter > to(big)]]"
    )
    driver = Driver(app, tmp_path)
    for n in range(6):
        driver.feed("in", b"k", J.serialize(n))
    assert [v for _, v in driver.decoded("even")] == [0, 2, 4]
    assert [v for _, v in driver.decoded("tens")] == [0, 10, 20, 30, 40, 50]
    assert [v for _, v in driver.decoded("big")] == [40, 50]


# -- aggregations -----------------------------------------------------------------------


def _word_count(app: eokafka.App, name: str | None = "by-word") -> None:
    (
        app.stream("words-in", key_serde=S, value_serde=S)
        .flat_map(lambda k, v: [(w.lower(), w) for w in v.split()])
        .filter(lambda k, v: len(k) > 2)
        .group_by_key(name=name)
        .count(name="word-counts")
        .to("counts-out", key_serde=S, value_serde=J)
    )


def test_word_count_repartitions_after_the_key_change(tmp_path: Path) -> None:
    app = eokafka.App("wc")
    _word_count(app)
    assert app.topology.internal_topics == {"wc-by-word-repartition": "words-in"}
    assert _sources(app) == {
        "words-in": [("stream > flat_map > filter > repartition(by-word)", ())],
        "wc-by-word-repartition": [
            ("repartition > count(word-counts) > to(counts-out)", ("word-counts",))
        ],
    }
    [rep] = app.topology.by_topic()["wc-by-word-repartition"]
    assert (rep.key_serde.name, rep.value_serde.name) == ("Json", "Json")

    driver = Driver(app, tmp_path)
    sentences = ["the cat sat on the mat", "The dog and THE cat", "a b c", "dog dog"]
    for i, sentence in enumerate(sentences):
        driver.feed("words-in", f"s{i}".encode(), sentence.encode())
    expected = Counter(w.lower() for s in sentences for w in s.split() if len(w) > 2)
    got: dict[str, list[int]] = defaultdict(list)
    for word, count in driver.decoded("counts-out"):
        got[word].append(count)
    assert {w: c[-1] for w, c in got.items()} == expected
    assert all(c == list(range(1, len(c) + 1)) for c in got.values())
    assert driver.hops("wc-by-word-repartition") == sum(expected.values())
    # each word's count lives in exactly one partition's store instance
    where = defaultdict(list)
    for p, store in driver.stores("word-counts").items():
        for word, _ in store.items():
            where[word].append(p)
    assert all(len(ps) == 1 for ps in where.values())


def test_repartition_name_defaults_to_the_aggregation_name() -> None:
    app = eokafka.App("wc")
    _word_count(app, name=None)
    assert app.topology.internal_topics == {"wc-word-counts-repartition": "words-in"}


def test_group_by_key_on_an_unchanged_key_needs_no_repartition(tmp_path: Path) -> None:
    app = eokafka.App("plain")
    (
        app.stream("in", key_serde=S, value_serde=J)
        .filter(lambda k, v: v > 0)
        .group_by_key()
        .reduce(lambda agg, v: agg + v, name="sums")
        .to("out", value_serde=J)
    )
    assert app.topology.internal_topics == {}
    assert _sources(app) == {"in": [("stream > filter > reduce(sums) > to(out)", ("sums",))]}
    driver = Driver(app, tmp_path)
    for key, value in [(b"a", 1), (b"b", 5), (b"a", -3), (b"a", 2)]:
        driver.feed("in", key, J.serialize(value))
    assert driver.decoded("out") == [("a", 1), ("b", 5), ("a", 3)]


def test_group_by_and_two_aggregations_share_one_repartition(tmp_path: Path) -> None:
    app = eokafka.App("shop")
    grouped = app.stream("orders", key_serde=S, value_serde=J).group_by(
        lambda k, v: v["customer"], name="by-customer"
    )
    grouped.aggregate(
        lambda: {"sum": 0, "max": 0},
        lambda k, v, agg: {"sum": agg["sum"] + v["amount"], "max": max(agg["max"], v["amount"])},
        name="stats",
    ).to("stats-out", value_serde=J)
    grouped.count(name="orders-per-customer").to_stream().filter(lambda k, n: n > 1).to(
        "repeat", value_serde=J
    )
    assert app.topology.internal_topics == {"shop-by-customer-repartition": "orders"}
    assert _sources(app)["shop-by-customer-repartition"] == [
        (
            "repartition > [aggregate(stats) > to(stats-out) | "
            "count(orders-per-customer) > filter > to(repeat)]",
            ("stats", "orders-per-customer"),
        )
    ]
    driver = Driver(app, tmp_path)
    orders = [("c1", 5), ("c2", 7), ("c1", 9), ("c1", 2), (None, 3)]
    for i, (customer, amount) in enumerate(orders):
        driver.feed(
            "orders", f"o{i}".encode(), J.serialize({"customer": customer, "amount": amount})
        )
    assert driver.decoded("stats-out") == [
        ("c1", {"sum": 5, "max": 5}),
        ("c2", {"sum": 7, "max": 7}),
        ("c1", {"sum": 14, "max": 9}),
        ("c1", {"sum": 16, "max": 9}),
    ]
    assert driver.decoded("repeat") == [("c1", 2), ("c1", 3)]
    assert driver.hops("shop-by-customer-repartition") == 4  # the None key never left


def test_aggregations_count_the_none_keys_and_values_they_drop(tmp_path: Path) -> None:
    app = eokafka.App("nulls")
    app.stream("in", key_serde=S, value_serde=J).group_by_key().count(name="n").to(
        "out", value_serde=J
    )
    driver = Driver(app, tmp_path)
    driver.feed("in", None, b"1")
    driver.feed("in", b"a", None)
    driver.feed("in", b"a", b"1")
    assert driver.decoded("out") == [("a", 1)]
    assert driver.dropped() == {"count(n): None key or value": 2}


def test_a_repartition_before_an_aggregation_counts_none_keys(tmp_path: Path) -> None:
    app = eokafka.App("nulls")
    app.stream("in", key_serde=S, value_serde=J).group_by(
        lambda k, v: v.get("user"), name="by-user"
    ).count(name="n")
    driver = Driver(app, tmp_path)
    driver.feed("in", b"k", b'{"user": "u1"}')
    driver.feed("in", b"k", b'{"other": 1}')
    assert driver.hops("nulls-by-user-repartition") == 1
    assert driver.dropped() == {"repartition(by-user): None key": 1}


# -- tables and joins -------------------------------------------------------------------


def _join_app() -> tuple[eokafka.App, eokafka.Table]:
    app = eokafka.App("shop")
    prices = app.table("prices", key_serde=S, value_serde=J)
    orders = app.stream("orders", key_serde=S, value_serde=J)
    orders.join(prices, lambda v, p: v["qty"] * p).to("totals", value_serde=J)
    orders.left_join(prices, lambda v, p: [v["qty"], p]).to("all", value_serde=J)
    return app, prices


def test_join_declares_the_table_store_on_the_stream_processor() -> None:
    app, prices = _join_app()
    assert prices.name == "prices"
    assert _sources(app) == {
        "prices": [("table > store(prices)", ("prices",))],
        "orders": [
            ("stream > [join(prices) > to(totals) | left_join(prices) > to(all)]", ("prices",))
        ],
    }
    assert app.topology.store_names_by_topic() == {"prices": {"prices"}, "orders": {"prices"}}
    text = app.topology.describe()
    assert "source orders\n  -> processor stream > [join(prices)" in text
    assert "store prices (memory)" in text


def test_inner_join_drops_absent_keys_left_join_passes_none(tmp_path: Path) -> None:
    app, _ = _join_app()
    driver = Driver(app, tmp_path)
    order = J.serialize({"qty": 2})
    driver.feed("orders", b"apple", order)  # before the table has it
    driver.feed("prices", b"apple", b"3")
    driver.feed("prices", b"pear", b"5")
    driver.feed("orders", b"apple", order)
    driver.feed("orders", b"pear", order)
    driver.feed("prices", b"apple", b"4")
    driver.feed("prices", b"pear", None)  # tombstone
    driver.feed("orders", b"apple", order)
    driver.feed("orders", b"pear", order)
    driver.feed("orders", None, order)
    assert driver.decoded("totals") == [("apple", 6), ("pear", 10), ("apple", 8)]
    assert [v for _, v in driver.decoded("all")] == [
        [2, None], [2, 3], [2, 5], [2, 4], [2, None], [2, None]
    ]  # fmt: skip
    assert [k for k, _ in driver.decoded("all")] == [
        "apple", "apple", "pear", "apple", "pear", None
    ]  # fmt: skip


def test_a_table_emits_its_updates_and_tombstones(tmp_path: Path) -> None:
    app = eokafka.App("mirror")
    app.table("prices", name="price-store", key_serde=S, value_serde=J).to("mirror", value_serde=J)
    assert _sources(app) == {
        "prices": [("table > store(price-store) > to(mirror)", ("price-store",))]
    }
    driver = Driver(app, tmp_path)
    driver.feed("prices", b"a", b"1")
    driver.feed("prices", b"a", None)
    assert driver.decoded("mirror") == [("a", 1), ("a", None)]
    assert all(len(store) == 0 for store in driver.stores("price-store").values())


def test_a_join_after_a_key_change_repartitions_with_the_table_key_serde(tmp_path: Path) -> None:
    app = eokafka.App("shop")
    prices = app.table("prices", key_serde=S, value_serde=J)
    rekeyed = app.stream("orders", key_serde=S, value_serde=J).map(
        lambda k, v: (v["product"], v["qty"])
    )
    with pytest.raises(TopologyError, match="give name="):
        rekeyed.join(prices, lambda q, p: q * p)
    rekeyed.join(prices, lambda q, p: q * p, name="by-product").to("totals", value_serde=J)
    assert app.topology.internal_topics == {"shop-by-product-repartition": "orders"}
    [rep] = app.topology.by_topic()["shop-by-product-repartition"]
    assert rep.key_serde is prices.key_serde  # same key bytes as the table topic
    assert rep.stores == ("prices",)
    driver = Driver(app, tmp_path)
    driver.feed("prices", b"apple", b"3")
    driver.feed("orders", b"o1", J.serialize({"product": "apple", "qty": 2}))
    assert driver.decoded("totals") == [("apple", 6)]


def test_join_with_an_aggregated_table(tmp_path: Path) -> None:
    app = eokafka.App("limits")
    spent = (
        app.stream("payments", key_serde=S, value_serde=J)
        .group_by_key()
        .reduce(lambda a, v: a + v, name="spent")
    )
    app.stream("checks", key_serde=S, value_serde=J).left_join(
        spent, lambda v, total: total or 0
    ).to("answers", value_serde=J)
    assert app.topology.store_names_by_topic() == {"payments": {"spent"}, "checks": {"spent"}}
    driver = Driver(app, tmp_path)
    driver.feed("payments", b"u1", b"5")
    driver.feed("payments", b"u1", b"7")
    driver.feed("checks", b"u1", b"null")
    driver.feed("checks", b"u2", b"null")
    assert driver.decoded("answers") == [("u1", 12), ("u2", 0)]


# -- declaration errors -----------------------------------------------------------------


def test_store_and_repartition_names_are_checked_at_declaration() -> None:
    app = eokafka.App("errors")
    s = app.stream("in", key_serde=S, value_serde=J)
    s.group_by_key().count(name="n")
    with pytest.raises(TopologyError, match="store 'n' is already used"):
        s.group_by_key().count(name="n")
    with pytest.raises(TopologyError, match="store 'n' is already used"):
        app.table("t", name="n")
    with pytest.raises(TopologyError, match="must be letters"):
        s.group_by_key().count(name="bad name")
    s.map(lambda k, v: (v, k)).group_by_key(name="again").count(name="a")
    with pytest.raises(TopologyError, match="declared twice"):
        s.map(lambda k, v: (v, k)).group_by_key(name="again").count(name="b")
    with pytest.raises(TopologyError, match="must be letters"):
        s.repartition("no/slash")
