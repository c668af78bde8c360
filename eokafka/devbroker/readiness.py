"""Whether a broker can be used: its ports free before start, its answer to clients after."""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from eokafka.devbroker.errors import BrokerError
from eokafka.devbroker.home import HOST, Layout, client_config
from eokafka.devbroker.process import alive, exit_code, log_tail


def port_in_use(port: int) -> bool:
    """Whether something listens on ``port`` of 127.0.0.1 already."""
    # SO_REUSEADDR mirrors what the JVM does, so TIME_WAIT leftovers of a previous
    # broker do not count as "in use" while a real listener still does.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def answers(
    bootstrap: str, timeout: float = 1.5, config: Mapping[str, str] | None = None
) -> bool:
    """True when the broker serves metadata, i.e. clients can really use it."""
    host, _, port = bootstrap.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=min(timeout, 1.0)):
            pass
    except (OSError, ValueError):
        return False  # cheap pre-check: no AdminClient (and no librdkafka noise) if nothing listens

    def _ignore(_error: KafkaError) -> None:
        """Connection errors during startup are expected; the caller retries."""

    admin = AdminClient(
        {
            **(config or {}),
            "bootstrap.servers": bootstrap,
            "socket.timeout.ms": max(int(timeout * 1000), 100),
            "log_level": 0,
            "error_cb": _ignore,
        }
    )
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return bool(metadata.brokers)


def wait_until_answering(
    pid: int, bootstrap: str, layout: Layout, timeout: float, log_offset: int
) -> None:
    """Return once the broker ``pid`` answers on ``bootstrap``; name why it did not, with the
    log lines written since ``log_offset``, if it exited or ``timeout`` s passed."""
    deadline = time.monotonic() + timeout
    while True:
        if not alive(pid):
            code = exit_code(pid)
            ended = f" with exit code {code}" if code is not None else ""
            raise BrokerError(
                f"The Kafka broker exited during startup{ended}. "
                f"Last lines of {layout.log_file}:\n{log_tail(layout, log_offset)}"
            )
        if answers(bootstrap, config=client_config(layout)):
            return
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"The Kafka broker (pid {pid}) did not answer on {bootstrap} "
                f"within {timeout:.0f}s. "
                f"Last lines of {layout.log_file}:\n{log_tail(layout, log_offset)}"
            )
        time.sleep(0.2)
