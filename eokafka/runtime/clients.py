"""Where the worker builds its librdkafka clients and first talks to the cluster.

librdkafka refuses a bad configuration (an unknown key, a malformed value) when a client is
built, with ``_INVALID_ARG``; every client is built inside :func:`config_errors`, which turns
that into a :class:`ConfigError` naming the key. :func:`await_broker` bounds the time a worker
spends on a cluster that does not answer, and says which address failed and how.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from eokafka.config import Settings, admin_config
from eokafka.errors import BrokerUnreachableError, ConfigError

CONNECT_TIMEOUT = 15.0  # seconds a worker waits for a first answer from the cluster
_TRY_EVERY = 1.0


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


class _LastError:
    """The client's error callback: remembers the latest error librdkafka reported."""

    def __init__(self) -> None:
        self.error: KafkaError | None = None

    def __call__(self, err: KafkaError) -> None:
        self.error = err


class Admin(AdminClient):
    """The worker's admin client; keeps the last error librdkafka reported on its own."""

    last_error: _LastError

    def __init__(self, conf: dict[str, Any]) -> None:
        last_error = _LastError()
        with config_errors():
            super().__init__({**conf, "error_cb": last_error})
        self.last_error = last_error


def admin_client(settings: Settings) -> Admin:
    return Admin(admin_config(settings))


def consumer(conf: dict[str, Any]) -> Consumer:
    with config_errors():
        return Consumer(conf)


def await_broker(admin: Admin, settings: Settings, timeout: float = CONNECT_TIMEOUT) -> None:
    """Return once the cluster answers a metadata request; else raise, naming the address,
    what failed and the setting to check, after ``timeout`` seconds at most."""
    deadline = time.monotonic() + timeout
    failure = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        try:
            admin.list_topics(timeout=max(0.1, min(_TRY_EVERY, remaining)))
            return
        except KafkaException as exc:
            failure = exc.args[0].str() if isinstance(exc.args[0], KafkaError) else str(exc)
        admin.poll(0)  # serve the error callback (and queued log lines)
        if time.monotonic() >= deadline:
            break
    last = admin.last_error.error
    if last is not None and last.code() not in (KafkaError._ALL_BROKERS_DOWN,):
        failure = last.str()
    raise BrokerUnreachableError(
        f"could not reach a Kafka broker at {settings.bootstrap_servers} within "
        f"{timeout:.0f}s: {failure}. Check bootstrap_servers (--bootstrap-servers, "
        "EOKAFKA_BOOTSTRAP_SERVERS or App(bootstrap_servers=...)) and that the broker runs "
        "and is reachable from here"
    )
