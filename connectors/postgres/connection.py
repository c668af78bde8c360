"""A PostgreSQL connection that comes back after the server restarts or the network drops."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from eokafka.errors import EokafkaError

log = logging.getLogger("connectors.postgres")
T = TypeVar("T")
_BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0)


class PostgresUnreachable(EokafkaError):
    """PostgreSQL did not answer for longer than the sink's ``reconnect_timeout``."""


class Reconnecting:
    """One libpq connection, re-opened on demand; ``retry`` runs an idempotent operation."""

    def __init__(
        self,
        dsn: str,
        what: str,
        autocommit: bool,
        reconnect_timeout: float,
        setup: str | None = None,
    ) -> None:
        self.dsn = dsn
        self.setup = setup
        self.what = what
        self.autocommit = autocommit
        self.reconnect_timeout = reconnect_timeout
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> psycopg.Connection[Any]:
        give_up = time.monotonic() + self.reconnect_timeout
        attempt = 0
        while True:
            try:
                conn = psycopg.connect(
                    self.dsn,
                    autocommit=self.autocommit,
                    connect_timeout=5,
                    application_name=self.what[:60],
                )
                if self.setup:
                    conn.execute(self.setup)
                    if not self.autocommit:
                        conn.commit()
                return conn
            except psycopg.OperationalError as exc:
                if time.monotonic() >= give_up:
                    raise PostgresUnreachable(
                        f"{self.what}: PostgreSQL unreachable for {self.reconnect_timeout:.0f} s "
                        f"(reconnect_timeout): {exc}"
                    ) from exc
                delay = _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
                log.warning("%s: cannot connect (%s), retrying in %.1f s", self.what, exc, delay)
                time.sleep(delay)
                attempt += 1

    def drop(self) -> None:
        """Forget the connection (after an error that left it unusable)."""
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None

    def rollback(self) -> None:
        """End the open transaction, if there is a connection; a broken one is dropped."""
        if self._conn is None or self._conn.closed:
            return
        try:
            self._conn.rollback()
        except psycopg.Error:
            self.drop()

    def retry(self, op: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``op`` until it gets through; only for operations safe to repeat."""
        give_up = time.monotonic() + self.reconnect_timeout
        while True:
            try:
                return op(self.conn)
            except psycopg.OperationalError as exc:
                self.drop()
                if time.monotonic() >= give_up:
                    raise PostgresUnreachable(f"{self.what}: {exc}") from exc
                log.warning("%s: connection lost (%s), retrying", self.what, exc)
                time.sleep(0.2)
