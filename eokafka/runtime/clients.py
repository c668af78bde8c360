"""Where the runtime gets its Kafka clients and its clock.

The worker, its transactions and its store restores make every client (and the group
requests of a static member: its leave on stop, the release of a crashed predecessor)
through one :class:`Clients`, so a bounded run can wrap the group consumer and
``eokafka.testing`` can put in-memory clients and a virtual clock under the very same
worker code.

librdkafka refuses a bad configuration (an unknown key, a malformed value) when a client is
built, with ``_INVALID_ARG``; the real clients are built inside :func:`config_errors`, which
turns that into a :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from eokafka.config import Settings
from eokafka.errors import ConfigError
from eokafka.runtime.group.leave import leave_group, release_predecessor

Config = dict[str, Any]


@contextmanager
def config_errors() -> Iterator[None]:
    """Turn librdkafka's refusal of a configuration into a ConfigError."""
    try:
        yield
    except KafkaException as exc:
        err = exc.args[0]
        if not isinstance(err, KafkaError) or err.code() != KafkaError._INVALID_ARG:
            raise
        raise ConfigError(
            f"librdkafka rejected the configuration: {err.str()} (librdkafka keys come from "
            "--config, EOKAFKA_CONFIG or App(config=...); see librdkafka's CONFIGURATION.md)"
        ) from None


def kafka_consumer(conf: Config) -> Consumer:
    with config_errors():
        return Consumer(conf)


def kafka_producer(conf: Config) -> Producer:
    with config_errors():
        return Producer(conf)


def kafka_admin(conf: Config) -> AdminClient:
    """The worker's long-lived admin client.

    librdkafka's log lines of a client wait in its queue until the client is polled, and
    nothing polls this one between admin calls: during a broker outage they would pile up.
    They would only repeat the consumer's and the producer's (same brokers), so this client
    logs critical lines only, unless the configuration sets ``log_level`` itself.
    """
    conf = {**conf}
    conf.setdefault("log_level", 2)
    with config_errors():
        return AdminClient(conf)


def epoch_ms() -> int:
    """The wall clock, epoch milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Clients:
    consumer: Callable[[Config], Any] = kafka_consumer  # the group member that reads inputs
    restore_consumer: Callable[[Config], Any] = kafka_consumer  # assign-only changelog reader
    producer: Callable[[Config], Any] = kafka_producer  # the transactional producer
    admin: Callable[[Config], Any] = kafka_admin
    # A static member stopped on purpose leaves its group (settings, instance id, member id).
    leave: Callable[[Settings, str, str | None], bool] = leave_group
    # KIP-848: a restarted static member releases its crashed predecessor (settings, id, admin).
    release_predecessor: Callable[[Settings, str, Any], bool] = release_predecessor
    clock: Callable[[], float] = time.monotonic  # seconds; commit deadlines and run limits
    wall_ms: Callable[[], int] = epoch_ms  # wall-clock timers and idle windows

    def replace(self, **changes: Any) -> Clients:
        return dataclasses.replace(self, **changes)


KAFKA = Clients()
