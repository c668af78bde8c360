"""Keyed records go where the Java client puts them (murmur2), unless the app says otherwise."""

from __future__ import annotations

import random
import zlib

import pytest

import eokafka
from eokafka import serdes
from eokafka.client_configs import partitioner, producer_config
from eokafka.config import resolve
from eokafka.errors import ConfigError
from eokafka.testing import TestDriver
from eokafka.testing.clients import MemoryProducer
from eokafka.testing.cluster import MemoryCluster
from tests.java_partitioner import java_murmur2, java_partition

S, J = serdes.String(), serdes.Json()
# Kafka's UtilsTest.testMurmur2: the values Java's Utils.murmur2 returns.
KAFKA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def _keys(n: int, seed: int) -> list[bytes]:
    """Keys of every length 0..40 (each tail length of murmur2), ASCII and not."""
    rng = random.Random(seed)
    return [rng.randbytes(rng.randint(0, 40)) for _ in range(n)] + [
        "ключ-é-🔑".encode(), b"product-7", b""
    ]


def test_the_reference_is_kafkas_murmur2() -> None:
    assert {key: java_murmur2(key) for key in KAFKA_MURMUR2} == KAFKA_MURMUR2


def test_producers_partition_like_the_java_client_by_default() -> None:
    s = resolve("orders", {}, env={})
    assert producer_config(s, "i")["partitioner"] == "murmur2_random"
    assert partitioner(s) == "murmur2_random"


@pytest.mark.parametrize("key", ["partitioner", "producer.partitioner"])
def test_an_explicit_partitioner_wins(key: str) -> None:
    s = resolve("orders", {"config": {key: "consistent_random"}}, env={})
    assert producer_config(s, "i")["partitioner"] == "consistent_random"
    assert partitioner(s) == "consistent_random"
    from_env = resolve("orders", {}, env={"EOKAFKA_CONFIG": f"{key}=murmur2"})
    assert producer_config(from_env, "i")["partitioner"] == "murmur2"


def test_a_consumer_setting_does_not_change_the_producers_partitioner() -> None:
    s = resolve("orders", {"config": {"consumer.partitioner": "consistent"}}, env={})
    assert producer_config(s, "i")["partitioner"] == "murmur2_random"


@pytest.mark.parametrize("partitions", [1, 2, 3, 4, 7, 12])
def test_the_in_memory_cluster_places_keys_like_the_java_client(partitions: int) -> None:
    cluster = MemoryCluster()
    cluster.create_topic("t", partitions)
    keys = _keys(300, partitions)
    assert [cluster.partition_for("t", k) for k in keys] == [
        java_partition(k, partitions) for k in keys
    ]
    producer = MemoryProducer(cluster, {})  # no partitioner setting: eokafka's default
    for k in keys:
        producer.produce("t", b"v", k)
    placed = [(p, e.key) for p, _, e in cluster.records("t", include_open=True)]
    assert placed == [(java_partition(k, partitions), k) for k in keys]


def test_an_in_memory_producer_follows_its_partitioner_setting() -> None:
    cluster = MemoryCluster()
    cluster.create_topic("t", 5)
    keys = _keys(100, 1)
    producer = MemoryProducer(cluster, {"partitioner": "consistent"})
    for k in keys:
        producer.produce("t", b"v", k)
    placed = [p for p, _, _ in cluster.records("t", include_open=True)]
    assert placed == [zlib.crc32(k) % 5 for k in keys]
    with pytest.raises(ConfigError, match="partitioner='fnv1a'"):
        MemoryProducer(cluster, {"partitioner": "fnv1a"})


def test_null_keys_take_the_partitions_in_turn() -> None:
    cluster = MemoryCluster()
    cluster.create_topic("t", 3)
    assert [cluster.partition_for("t", None) for _ in range(6)] == [0, 1, 2, 0, 1, 2]


def _rekeyed_join(**settings: object) -> eokafka.App:
    """Orders keyed by order id, re-keyed by product, left-joined with a price table."""
    app = eokafka.App("shop", **settings)
    prices = app.table("prices", key_serde=S, value_serde=J)
    (
        app.stream("orders", key_serde=S, value_serde=J)
        .map(lambda _, order: (order["product"], order))
        .left_join(prices, lambda order, price: [order["id"], price], name="by-product")
        .to("priced", key_serde=S, value_serde=J)
    )
    return app


def _run_rekeyed_join(app: eokafka.App) -> tuple[dict[int, int | None], dict[int, int]]:
    """Prices written at the Java client's partitions, then orders: (found, expected)."""
    rng = random.Random(5)
    products = {f"product-{i}": rng.randint(1, 999) for i in range(40)}
    orders = [{"id": i, "product": rng.choice(list(products))} for i in range(200)]
    with TestDriver(app, partitions=4) as driver:
        for product, price in products.items():
            at = java_partition(product.encode(), 4)
            driver.pipe("prices", product, price, partition=at)
        for order in orders:
            driver.pipe("orders", f"order-{order['id']}", order, commit=False)
        driver.commit()
        found = {r.value[0]: r.value[1] for r in driver.output("priced", value_serde=J)}
    return found, {o["id"]: products[o["product"]] for o in orders}


def test_a_rekeyed_stream_finds_every_key_of_a_table_written_by_a_java_producer() -> None:
    found, expected = _run_rekeyed_join(_rekeyed_join())
    assert found == expected


def test_with_librdkafkas_crc32_the_same_join_misses_keys() -> None:
    """The failure the default prevents: a CRC32 repartition misses the Java placement."""
    found, expected = _run_rekeyed_join(_rekeyed_join(config={"partitioner": "consistent_random"}))
    assert found.keys() == expected.keys()
    missed = [order for order, price in found.items() if price is None]
    assert len(missed) > len(expected) / 2


def test_the_driver_writes_inputs_where_the_apps_producers_would() -> None:
    app = eokafka.App("copy")

    @app.processor("in", key_serde=S, value_serde=S)
    def copy(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
        ctx.send("out", record.key, record.value)

    keys = [f"k{i}" for i in range(50)]
    with TestDriver(app, partitions=6) as driver:
        for k in keys:
            driver.pipe("in", k, "v")
        got = {r.key: r.partition for r in driver.output("out", key_serde=S)}
    assert got == {k: java_partition(k.encode(), 6) for k in keys}
