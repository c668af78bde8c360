"""A throwaway PostgreSQL server for tests: a container where Docker answers, else a local one.

The local one is ``connectors.postgres.devserver.LocalPostgres`` (Debian's server run as an
unprivileged user in a temporary folder). ``restart()`` stops and starts the same server,
connections cut (the chaos tests use it).
"""

from __future__ import annotations

import os
import time

from connectors.postgres.devserver import PREPARED, LocalPostgres, free_port
from tests.conftest import _docker_available


class ContainerPostgres:
    """postgres:16 through testcontainers, with the same settings as the local server."""

    def __init__(self) -> None:
        from testcontainers.postgres import PostgresContainer

        # A fixed host port: a restarted container keeps its address (an ephemeral mapping
        # may change), so a worker's connection string stays valid across restart().
        self._container = (
            PostgresContainer("postgres:16", driver=None)
            .with_command(f"postgres -c max_prepared_transactions={PREPARED} -c fsync=off")
            .with_bind_ports(5432, free_port())
        )
        self._container.start()

    @property
    def dsn(self) -> str:
        c = self._container
        host, port = c.get_container_host_ip(), c.get_exposed_port(5432)
        return f"host={host} port={port} user={c.username} password={c.password} dbname={c.dbname}"

    def restart(self, mode: str = "immediate") -> None:
        c = self._container.get_wrapped_container()
        c.restart(timeout=0 if mode == "immediate" else 10)
        self._wait()

    def _wait(self) -> None:
        import psycopg

        deadline = time.monotonic() + 120
        while True:
            try:
                psycopg.connect(self.dsn, connect_timeout=3).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # the server is still starting

    def close(self) -> None:
        self._container.stop()


def start_postgres() -> LocalPostgres | ContainerPostgres:
    """A container where a Docker engine answers (unless EOKAFKA_TEST_POSTGRES=local)."""
    if os.environ.get("EOKAFKA_TEST_POSTGRES") != "local" and _docker_available():
        return ContainerPostgres()
    return LocalPostgres()
