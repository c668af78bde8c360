"""PostgreSQL outbox source: rows appended to a table, into Kafka exactly once.

Reading "rows with an id above the last one read" skips rows: a transaction that took id 7
may commit after one that took id 8 was read. So the position is a transaction snapshot
(``pg_current_snapshot()``), and each poll reads the rows whose inserting transaction is
visible in a new snapshot but was not in the previous one, whatever their ids. That needs
the inserting transaction's id in every row:

    ALTER TABLE outbox ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();

Rows are read in id order, ``max_records`` at a time: the position is the pair of snapshots
and the last id read between them, so a large delta is produced over several transactions.
The table is an outbox: rows are appended, not updated or deleted.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from connectors.postgres.connection import Reconnecting
from eokafka import faults
from eokafka.errors import ConfigError
from eokafka.source import Origin, Read, SourceItem


def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, uuid.UUID | memoryview | bytes):
        return str(v) if isinstance(v, uuid.UUID) else bytes(v).hex()
    return v


class PostgresSource:
    """Feed a topic from ``table``; values are dicts of ``columns`` (default: all but txid)."""

    def __init__(
        self,
        name: str,
        dsn: str,
        table: str,
        *,
        id_column: str = "id",
        txid_column: str = "txid",
        columns: Sequence[str] | None = None,
        key_column: str | None = None,
        reconnect_timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.table = table
        self.id_column = id_column
        self.txid_column = txid_column
        self.key_column = key_column
        self._columns = list(columns) if columns else None
        # Connects on first use: close() is safe before open().
        self._conn = Reconnecting(
            dsn, f"eokafka source {name}", autocommit=False, reconnect_timeout=reconnect_timeout
        )
        self._prev: str | None = None  # snapshot everything before which is read
        self._window: tuple[str, Any] | None = None  # (snapshot being read up to, last id)

    def __repr__(self) -> str:
        return f"PostgreSQL table {self.table} (outbox by {self.txid_column})"

    def open(self, application_id: str) -> None:
        conn = self._conn.conn
        schema, _, bare = self.table.rpartition(".")
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE "
                "table_name = %s AND table_schema = COALESCE(NULLIF(%s, ''), current_schema())",
                (bare, schema),
            ).fetchall()
        )
        conn.rollback()
        if not types:
            raise ConfigError(f"PostgreSQL table {self.table!r} does not exist")
        if types.get(self.txid_column) != "xid8":
            raise ConfigError(
                f"PostgresSource {self.name!r}: table {self.table!r} needs a column "
                f"{self.txid_column} xid8 with the inserting transaction's id, so that rows "
                "committed out of id order are not skipped: ALTER TABLE "
                f"{self.table} ADD COLUMN {self.txid_column} xid8 NOT NULL DEFAULT "
                "pg_current_xact_id()"
            )
        if self.id_column not in types:
            raise ConfigError(f"table {self.table!r} has no id column {self.id_column!r}")
        cols = self._columns or [c for c in types if c != self.txid_column]
        missing = [c for c in cols if c not in types]
        if missing:
            raise ConfigError(f"table {self.table!r} has no column {missing[0]!r}")
        self._cols = cols
        self._select = sql.SQL(", ").join(map(sql.Identifier, cols))
        self._id_at = cols.index(self.id_column) if self.id_column in cols else None

    def seek(self, position: Any) -> None:
        position = position or {}
        self._prev = position.get("snapshot")
        window = position.get("window")
        self._window = (window["snapshot"], window["after"]) if window else None

    def _position(self) -> dict[str, Any]:
        pos: dict[str, Any] = {"snapshot": self._prev}
        if self._window is not None:
            pos["window"] = {"snapshot": self._window[0], "after": self._window[1]}
        return pos

    def poll(self, max_records: int) -> tuple[list[SourceItem], Any]:
        faults.reached("postgres-source.poll")
        return self._conn.retry(lambda conn: self._poll(conn, max_records))

    def _poll(self, conn: psycopg.Connection[Any], limit: int) -> tuple[list, Any]:
        try:
            if self._window is None:
                current = conn.execute("SELECT pg_current_snapshot()::text").fetchone()[0]
                self._window = (current, None)
            snapshot, after = self._window
            table = sql.Identifier(*self.table.split("."))
            txid, id_col = sql.Identifier(self.txid_column), sql.Identifier(self.id_column)
            where = [sql.SQL("pg_visible_in_snapshot({}, %(cur)s::pg_snapshot)").format(txid)]
            if self._prev is not None:
                where.append(sql.SQL(
                    "{0} >= pg_snapshot_xmin(%(prev)s::pg_snapshot) AND NOT "
                    "pg_visible_in_snapshot({0}, %(prev)s::pg_snapshot)"
                ).format(txid))  # fmt: skip
            if after is not None:
                where.append(sql.SQL("{} > %(after)s").format(id_col))
            query = sql.SQL("SELECT {}, {} FROM {} WHERE {} ORDER BY {} LIMIT %(limit)s").format(
                id_col, self._select, table, sql.SQL(" AND ").join(where), id_col
            )
            rows = conn.execute(
                query, {"cur": snapshot, "prev": self._prev, "after": after, "limit": limit}
            ).fetchall()
        finally:
            conn.rollback()
        out = []
        for row in rows:
            value = {c: _jsonable(v) for c, v in zip(self._cols, row[1:], strict=True)}
            key = value.get(self.key_column) if self.key_column else None
            origin = Origin(self.name, (("table", self.table), ("id", str(row[0]))))
            out.append(Read(None if key is None else str(key), value, origin))
        if len(rows) < limit:
            self._prev, self._window = snapshot, None  # the delta is read through
        else:
            self._window = (snapshot, rows[-1][0])
        return out, self._position()

    def close(self) -> None:
        self._conn.drop()
