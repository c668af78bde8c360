"""Settings precedence, validation and librdkafka assembly (pure logic, no broker)."""

from __future__ import annotations

import pytest

from eokafka.client_configs import consumer_config, producer_config, restore_consumer_config
from eokafka.config import resolve
from eokafka.errors import ConfigError


def test_precedence_cli_over_env_over_app_kwargs() -> None:
    app = {"bootstrap_servers": "app:1", "commit_interval_ms": 200, "metrics_port": 9000}
    env = {"EOKAFKA_BOOTSTRAP_SERVERS": "env:2", "EOKAFKA_COMMIT_INTERVAL_MS": "300"}
    cli = {"bootstrap_servers": "cli:3", "processes": None}
    s = resolve("a", app, env=env, cli=cli)
    assert s.bootstrap_servers == "cli:3"
    assert s.commit_interval_ms == 300
    assert s.metrics_port == 9000
    assert s.processes == 1


def test_config_maps_merge_key_by_key() -> None:
    s = resolve(
        "a",
        {"config": {"linger.ms": "1", "compression.type": "lz4"}},
        env={"EOKAFKA_CONFIG": "linger.ms=7; consumer.fetch.min.bytes=10"},
        cli={"config": {"compression.type": "zstd"}},
    )
    assert dict(s.config) == {
        "linger.ms": "7",
        "compression.type": "zstd",
        "consumer.fetch.min.bytes": "10",
    }
    consumer = consumer_config(s, "i")
    producer = producer_config(s, "i")
    assert consumer["fetch.min.bytes"] == "10" and "fetch.min.bytes" not in producer
    assert producer["linger.ms"] == "7" and consumer["linger.ms"] == "7"


def test_exactly_once_settings_are_enforced() -> None:
    s = resolve("orders", {}, env={})
    consumer = consumer_config(s, "host-1")
    producer = producer_config(s, "host-1")
    assert consumer["isolation.level"] == "read_committed"
    assert consumer["enable.auto.commit"] is False
    assert consumer["group.id"] == "orders"
    assert consumer["group.instance.id"] == "host-1"
    assert producer["transactional.id"] == "orders-host-1"
    assert producer["transaction.timeout.ms"] == 10_000


def test_static_membership_can_be_turned_off() -> None:
    s = resolve("orders", {"static_membership": False}, env={})
    assert "group.instance.id" not in consumer_config(s, "x")


@pytest.mark.parametrize("key", ["isolation.level", "consumer.enable.auto.commit", "group.id"])
def test_protected_librdkafka_keys_are_refused(key: str) -> None:
    with pytest.raises(ConfigError, match=key.split(".", 1)[-1] if "consumer." in key else key):
        resolve("a", {"config": {key: "x"}}, env={})


def test_transaction_timeout_shorter_than_commit_interval_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        resolve("a", {"commit_interval_ms": 5000}, env={"EOKAFKA_TRANSACTION_TIMEOUT_MS": "1000"})
    assert "transaction.timeout.ms (1000)" in str(info.value)
    assert "commit.interval.ms (5000)" in str(info.value)


def test_transaction_timeout_given_as_librdkafka_key_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="transaction.timeout.ms"):
        resolve("a", {}, env={}, cli={"config": {"transaction.timeout.ms": "50"}})
    s = resolve("a", {}, env={}, cli={"config": {"transaction.timeout.ms": "20000"}})
    assert s.transaction_timeout_ms == 20000 and "transaction.timeout.ms" not in s.config


def test_bad_values_name_their_source() -> None:
    with pytest.raises(ConfigError, match="EOKAFKA_PROCESSES"):
        resolve("a", {}, env={"EOKAFKA_PROCESSES": "many"})
    with pytest.raises(ConfigError, match="unknown setting 'bootstrap'"):
        resolve("a", {"bootstrap": "x"}, env={})
    with pytest.raises(ConfigError, match="on_error"):
        resolve("a", {"on_error": "ignore"}, env={})
    with pytest.raises(ConfigError, match="key=value"):
        resolve("a", {}, env={"EOKAFKA_CONFIG": "linger.ms"})


def test_the_restore_consumer_never_resets_and_gets_the_consumer_keys() -> None:
    s = resolve(
        "orders",
        {"config": {"consumer.auto.offset.reset": "latest", "security.protocol": "ssl"}},
        env={},
    )
    conf = restore_consumer_config(s)
    assert conf["auto.offset.reset"] == "error"
    assert conf["isolation.level"] == "read_committed"
    assert conf["security.protocol"] == "ssl"


def test_every_client_logs_through_python_logging() -> None:
    s = resolve("orders", {}, env={})
    for conf in (consumer_config(s, "i"), producer_config(s, "i"), restore_consumer_config(s)):
        assert conf["logger"].name == "eokafka.librdkafka"
