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
    """An error callback: remembers the latest error librdkafka reported."""

    def __init__(self) -> None:
        self.error: KafkaError | None = None

    def __call__(self, err: KafkaError) -> None:
        self.error = err


def admin_client(settings: Settings) -> AdminClient:
    """The worker's long-lived admin client.

    librdkafka's log lines of a client wait in its queue until the client is polled, and
    nothing polls this one between admin calls: during a broker outage they would pile up.
    They would only repeat the consumer's and the producer's (same brokers), so this client
    logs critical lines only, unless the configuration sets ``log_level`` itself.
    """
    conf = admin_config(settings)
    conf.setdefault("log_level", 2)
    with config_errors():
        return AdminClient(conf)


def consumer(conf: dict[str, Any]) -> Consumer:
    with config_errors():
        return Consumer(conf)


def await_broker(settings: Settings, timeout: float = CONNECT_TIMEOUT) -> None:
    """Return once the cluster answers a metadata request; else raise, naming the address,
    what failed and the setting to check, after ``timeout`` seconds at most.

    A client of its own, polled here, so that its error callback and log lines are served.
    """
    last_error = _LastError()
    with config_errors():
        admin = AdminClient({**admin_config(settings), "error_cb": last_error})
    deadline = time.monotonic() + timeout
    failure = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        try:
            admin.list_topics(timeout=max(0.1, min(_TRY_EVERY, remaining)))
            return
        except KafkaException as exc:
            failure = exc.args[0].str() if isinstance(exc.args[0], KafkaError) else str(exc)
        admin.poll(0)  # serve the error callback and the log lines
        if time.monotonic() >= deadline:
            break
    last = last_error.error
    if last is not None and last.code() != KafkaError._ALL_BROKERS_DOWN:
        failure = last.str()
    raise BrokerUnreachableError(
        f"could not reach a Kafka broker at {settings.bootstrap_servers} within "
        f"{timeout:.0f}s: {failure}. Check bootstrap_servers (--bootstrap-servers, "
        "EOKAFKA_BOOTSTRAP_SERVERS or App(bootstrap_servers=...)) and that the broker runs "
        "and is reachable from here"
    )
