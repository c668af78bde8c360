"""Kafka clients of eokafka's own commands (topics, produce, consume) and of the demo.

They connect as an app's workers do: ``bootstrap_servers`` and the librdkafka settings of
the App, ``EOKAFKA_*`` and the command line, security settings included. First contact is
checked as a worker checks it (runtime/preflight.py, 10 s), so an unreachable or refusing
cluster is one error naming the address, what failed and the setting to check. librdkafka's
own log lines go to the ``eokafka.librdkafka`` logger (see ``logs.setup_command_logging``),
never straight to the terminal.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from eokafka.client_configs import DEFAULT_PARTITIONER, admin_config, client_keys
from eokafka.config import Settings
from eokafka.errors import BrokerUnreachableError, EokafkaError
from eokafka.logs import librdkafka_logger

DELIVERY_TIMEOUT_MS = 30_000  # a record the cluster has not taken by then is an error
_GONE = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError.REQUEST_TIMED_OUT,
    }
)


def reach(settings: Settings) -> None:
    """Return once the cluster answers; else BrokerUnreachableError or ConfigError (a
    refused login or TLS handshake) within the worker's bound (runtime/preflight.py)."""
    from eokafka.runtime.process.preflight import check_connection

    check_connection(settings)


def admin(settings: Settings) -> AdminClient:
    from eokafka.runtime.clients import kafka_admin

    return kafka_admin(admin_config(settings))


def producer(settings: Settings) -> Producer:
    """An idempotent producer that partitions keys as the app's producers do."""
    from eokafka.runtime.clients import kafka_producer

    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "logger": librdkafka_logger(),
        "client.id": f"{settings.application_id}-produce",
        "partitioner": DEFAULT_PARTITIONER,
        "linger.ms": 5,
        "message.timeout.ms": DELIVERY_TIMEOUT_MS,
        "allow.auto.create.topics": False,
    }
    conf.update(client_keys(settings, "producer"))
    conf["enable.idempotence"] = True
    return kafka_producer(conf)


def consumer(settings: Settings, committed: bool = True, wait_ms: int = 100) -> Consumer:
    """A reader by assign(): it never joins a group and never commits. ``committed``:
    read_committed; ``wait_ms``: how long the broker holds an empty fetch (a partition's
    end shows one such fetch later)."""
    from eokafka.runtime.clients import kafka_consumer

    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "logger": librdkafka_logger(),
        "client.id": f"{settings.application_id}-consume",
        "fetch.wait.max.ms": wait_ms,
        "allow.auto.create.topics": False,
    }
    conf.update(client_keys(settings, "consumer"))
    conf.update(
        {
            "group.id": f"{settings.application_id}-consume",  # never joins: assign() only
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed" if committed else "read_uncommitted",
        }
    )
    return kafka_consumer(conf)


def kafka_error(exc: KafkaException, bootstrap: str) -> EokafkaError:
    """One line for a Kafka error a command met after the cluster first answered."""
    err = exc.args[0]
    if not isinstance(err, KafkaError):
        return EokafkaError(f"Kafka: {exc}")
    if err.code() in _GONE:
        return BrokerUnreachableError(
            f"the cluster at {bootstrap} stopped answering: {err.str()}. Check that the "
            "broker runs and is reachable from here"
        )
    return EokafkaError(f"Kafka refused the request: {err.str()} ({err.name()})")
