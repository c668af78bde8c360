"""Session-wide Kafka broker for integration tests, started only when a test asks for it.

Broker source, first match wins:

1. ``EOKAFKA_TEST_BOOTSTRAP``: an already running cluster (CI service, compose stack).
2. A Docker engine that answers: an ``apache/kafka`` container via testcontainers.
3. Otherwise the local JVM dev broker (``eokafka.devbroker``) in a temporary home.

``EOKAFKA_TEST_BROKER=local`` skips the Docker probe. A test that uses the broker or the
PostgreSQL fixtures is marked ``integration`` here, and one that starts PostgreSQL itself
without the marker fails at once, so ``-m 'not integration'`` needs no broker, no PostgreSQL,
no Java and no Docker.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

_KAFKA_PORT_IN_CONTAINER = 9092
_START_SCRIPT = "/tmp/eokafka-start.sh"
_START_FLAG = "/tmp/eokafka-start.ready"
# Ports that other local brokers use by convention (compose, CLI default, shared dev).
_RESERVED_PORTS = frozenset({9092, 9093, 19092, 19093, 29092, 29093})


# A test that uses one of these (directly or through another fixture) needs a server.
SERVER_FIXTURES = frozenset({"kafka_bootstrap", "postgres_server", "postgres_dsn"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs a Kafka broker or PostgreSQL")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the broker or PostgreSQL, so ``-m 'not integration'`` runs
    with neither on the machine."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _no_server_without_the_marker(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test not marked integration that starts PostgreSQL itself (not through the
    fixtures) fails at once, naming the marker it lacks."""
    if request.node.get_closest_marker("integration") is not None:
        return
    nodeid = request.node.nodeid

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(f"{nodeid} starts PostgreSQL: mark it @pytest.mark.integration")

    monkeypatch.setattr("connectors.postgres.devserver.LocalPostgres.__init__", refuse)


def _docker_available() -> bool:
    if os.environ.get("EOKAFKA_TEST_BROKER") == "local":
        return False
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no SDK, no socket, daemon down: all mean "no Docker"
        return False


def _kafka_image() -> str:
    from eokafka.devbroker import kafka_version

    return f"apache/kafka:{kafka_version()}"  # same version as the dev broker and compose


def _start_kafka_container() -> DockerContainer:
    """Start apache/kafka in KRaft mode, advertising the randomly mapped host port.

    testcontainers' KafkaContainer only drives Confluent images, so this follows the
    Java module's approach: the container waits for a start script, which is written
    once the mapped port is known and exports the matching advertised listeners.
    """
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    container = (
        DockerContainer(_kafka_image())
        .with_exposed_ports(_KAFKA_PORT_IN_CONTAINER)
        .with_envs(
            CLUSTER_ID="JzbwofpHScSqoaKbkJ0Ewg",  # any fixed 16-byte base64 Kafka Uuid
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS="PLAINTEXT://:9092,BROKER://:9093,CONTROLLER://:9094",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=(
                "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            KAFKA_INTER_BROKER_LISTENER_NAME="BROKER",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9094",
            KAFKA_AUTO_CREATE_TOPICS_ENABLE="false",
            KAFKA_NUM_PARTITIONS="1",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS="4",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_TRANSACTION_STATE_LOG_NUM_PARTITIONS="4",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
        )
        .with_command(
            ["sh", "-c", f"while [ ! -f {_START_FLAG} ]; do sleep 0.1; done; sh {_START_SCRIPT}"]
        )
    )
    container.start()
    try:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(_KAFKA_PORT_IN_CONTAINER)
        script = (
            f"export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://{host}:{port},BROKER://$(hostname):9093\n"
            "exec /etc/kafka/docker/run\n"
        )
        container.copy_into_container(script.encode(), _START_SCRIPT)
        # Separate flag file: the script must be complete before the loop runs it.
        container.copy_into_container(b"", _START_FLAG)
        LogMessageWaitStrategy("Kafka Server started").with_startup_timeout(180).wait_until_ready(
            container
        )
    except BaseException:
        container.stop()
        raise
    return container


def _free_port_pair() -> int:
    """A port P with P and P+1 (controller) free, away from the ephemeral range."""
    for _ in range(200):
        port = random.randrange(20000, 30000)
        if {port, port + 1} & _RESERVED_PORTS:
            continue
        try:
            for candidate in (port, port + 1):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of TCP ports found in 20000-30000")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a single-node Kafka 4 broker shared by the whole session."""
    external = os.environ.get("EOKAFKA_TEST_BOOTSTRAP")
    if external:
        yield external
        return

    if _docker_available():
        container = _start_kafka_container()
        try:
            host = container.get_container_host_ip()
            yield f"{host}:{container.get_exposed_port(_KAFKA_PORT_IN_CONTAINER)}"
        finally:
            container.stop()
        return

    from eokafka.devbroker import BrokerError, start_broker, stop_broker

    home = tmp_path_factory.mktemp("kafka-broker")
    for attempt in range(5):
        try:
            info = start_broker(port=_free_port_pair(), home=home, fresh=True)
            break
        except BrokerError as exc:
            # Another process may grab the port between our probe and the JVM's bind.
            if "already in use" not in str(exc) or attempt == 4:
                raise
    try:
        yield info.bootstrap
    finally:
        stop_broker(home)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """One throwaway PostgreSQL server for the session (see tests/postgres.py).

    Tests that restart it (``postgres_server.restart()``) leave it running again.
    """
    from tests.postgres import start_postgres

    server = start_postgres()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server: object) -> str:
    """A libpq connection string to the session's PostgreSQL (superuser, 2PC enabled)."""
    return str(postgres_server.dsn)  # type: ignore[attr-defined]
