"""PostgreSQL sink: rows of a Kafka transaction land in a table exactly once (invariant 12).

Two modes:

``two-phase`` (default), for topologies that write to Kafka topics and PostgreSQL together.
Each Kafka transaction with rows has one PostgreSQL transaction. Before the Kafka commit the
partitions and end offsets it covers are recorded in ``eokafka_sink_prepared``
(autocommitted, so any worker can read them while the transaction is prepared), its rows are
sent (COPY for appends, pipelined ``executemany`` for upserts), and it is ``PREPARE
TRANSACTION``d as ``eok:<txn id>:<sink>``, holding a lock on the rows that record its
partitions; after the Kafka commit it is ``COMMIT PREPARED``. Recovery finds prepared
transactions in ``pg_prepared_xacts`` (``prepared.py``): one whose Kafka commit never
happened is rolled back by whichever worker next resolves the partitions it covers, or by
this worker's next transaction if a stalled zombie prepared it after this worker's last
recovery, so it never keeps its row locks (or PostgreSQL's xmin) for long. Needs
``max_prepared_transactions > 0`` on the server.

``offsets-in-database``, for sink-only apps: rows and the consumed offsets (group, topic,
partition) are written in one ordinary PostgreSQL transaction, committed before the Kafka
commit; on assignment the worker seeks to the offsets in ``eokafka_offsets``. The Kafka
commit that follows only keeps the group's lag visible. An update of the stored offset
checks the value this worker last saw, so a stale worker can't move it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from connectors.postgres.connection import Reconnecting
from connectors.postgres.prepared import DDL as _PREPARED_DDL
from connectors.postgres.prepared import PREFIX as _GID_PREFIX
from connectors.postgres.prepared import PreparedRecord, gid_of
from connectors.postgres.table import (
    Extract,
    TableRows,
    copy_sql,
    insert_sql,
    read_columns,
)
from eokafka import faults
from eokafka.errors import ConfigError, EokafkaError
from eokafka.sink import TP, RecordRefused, SinkUnavailable, Where

log = logging.getLogger("connectors.postgres")
Mode = Literal["two-phase", "offsets-in-database"]

_CONTROL_DDL = _PREPARED_DDL + """
CREATE TABLE IF NOT EXISTS eokafka_offsets (
    group_id text NOT NULL,
    topic text NOT NULL,
    kafka_partition int NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (group_id, topic, kafka_partition)
);
"""
# PostgreSQL errors one row can cause (constraints, values it rejects): the poison policy
# handles that row's record. Others (schema, permissions) refuse the whole batch.
_ROW_FAULTS = (pgerrors.IntegrityError, pgerrors.DataError)


class SinkRefused(EokafkaError):
    """PostgreSQL refused a batch for a reason no one row explains (schema, permissions)."""


class PostgresSink:
    """Write record values as rows of ``table``, exactly once with the Kafka commit.

    ``columns``: table column names filled from the same-named fields of each value (a
    dict), or a mapping column -> field name or ``fn(value)``; by default every column
    without a default. ``key``: upsert on these columns (``ON CONFLICT ... DO UPDATE``);
    without it, rows are appended.
    """

    def __init__(
        self,
        name: str,
        dsn: str,
        table: str,
        *,
        columns: Sequence[str] | Mapping[str, str | Extract] | None = None,
        key: Sequence[str] = (),
        mode: Mode = "two-phase",
        reconnect_timeout: float = 60.0,
        lock_timeout: float = 10.0,
    ) -> None:
        if mode not in ("two-phase", "offsets-in-database"):
            raise ConfigError(
                f"PostgresSink {name!r}: mode {mode!r}: two-phase or offsets-in-database"
            )
        self.name = name
        self.table = table
        self.mode = mode
        self.keeps_offsets = mode == "offsets-in-database"
        self.key = tuple(key)
        self._mapping = columns
        self.lock_timeout = lock_timeout
        self._rows: list[tuple[Any, ...]] = []
        self._where: list[Where] = []
        self._prepared_gid: str | None = None
        self._group = ""
        self._instance = ""
        self._seen: dict[TP, int | None] = {}  # offsets-in-database: offsets as last read
        self.rows: TableRows | None = None
        what = f"eokafka sink {name}"
        # A row lock held by a prepared transaction of a worker that is gone makes writes
        # wait; the timeout turns that into an abort, whose recovery resolves the holder.
        # Both connect on first use: close() is safe before open().
        self._data = Reconnecting(
            dsn,
            what,
            autocommit=False,
            reconnect_timeout=reconnect_timeout,
            setup=f"SET lock_timeout = '{int(lock_timeout * 1000)}ms'",
        )
        self._control = Reconnecting(
            dsn, f"{what} control", autocommit=True, reconnect_timeout=reconnect_timeout
        )
        self._record = PreparedRecord(self._control, name)

    def __repr__(self) -> str:
        how = f"upsert on {', '.join(self.key)}" if self.key else "append"
        return f"PostgreSQL table {self.table}, {how}, {self.mode}"

    # -- setup ---------------------------------------------------------------------------

    def open(self, application_id: str, instance_id: str) -> None:
        self._group, self._instance = application_id, instance_id
        longest = f"{_GID_PREFIX}{application_id}:{instance_id}:{'9' * 13}:{'9' * 10}:{self.name}"
        if self.mode == "two-phase" and len(longest) > 200:
            raise ConfigError(
                f"PostgresSink {self.name!r}: application id, instance id and sink name are too "
                "long for a PostgreSQL transaction id (200 characters); shorten one"
            )
        self._record.bind(application_id, instance_id)
        conn = self._control.conn
        if self.mode == "two-phase":
            allowed = int(conn.execute("SHOW max_prepared_transactions").fetchone()[0])
            if allowed <= 0:
                raise ConfigError(
                    f"PostgresSink {self.name!r}: the server has max_prepared_transactions = 0, "
                    "so PREPARE TRANSACTION is refused; set max_prepared_transactions (e.g. 64) "
                    "in postgresql.conf and restart it, or use mode='offsets-in-database' "
                    "for a sink-only app"
                )
        conn.execute(_CONTROL_DDL)
        self.rows = self.table_rows(self._data.conn)
        self._insert = insert_sql(self.table, self.rows.names, self.key)
        self._copy = copy_sql(self.table, self.rows.names)

    def table_rows(self, conn: psycopg.Connection[Any]) -> TableRows:
        """How this sink turns a record value into a row of its table (its columns, checked
        against the table's as ``conn`` sees it); ``eokafka verify --repair`` writes with it."""
        return TableRows(self.table, read_columns(conn, self.table), self._mapping, self.key)

    # -- the transaction -----------------------------------------------------------------

    def row(self, value: Any) -> tuple[Any, ...]:
        assert self.rows is not None, "sink used before open()"
        return self.rows.convert(value)

    def add(self, where: Where, row: Any) -> None:
        self._rows.append(row)
        self._where.append(where)

    def _send_rows(self, conn: psycopg.Connection[Any]) -> None:
        rows = self._rows
        half = len(rows) // 2
        with conn.cursor() as cur:
            if self.key:
                cur.executemany(self._insert, rows[:half])
                faults.reached("postgres.mid-batch")
                cur.executemany(self._insert, rows[half:])
            else:
                with cur.copy(self._copy) as copy:
                    for i, r in enumerate(rows):
                        if i == half:
                            faults.reached("postgres.mid-batch")
                        copy.write_row(r)

    def _refused_row(self, conn: psycopg.Connection[Any]) -> RecordRefused | None:
        """After a refused batch: the first record whose row PostgreSQL refuses on its own.

        The rows are sent again one by one, the same way (COPY or upsert), each in a
        savepoint, with deferred constraints checked at once; the transaction is then rolled
        back. None when every row goes in alone (the fault was not one row's).
        """
        conn.rollback()
        try:
            with conn.cursor() as cur:
                cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
                for where, row in zip(self._where, self._rows, strict=True):
                    cur.execute("SAVEPOINT eok_row")
                    try:
                        if self.key:
                            cur.execute(self._insert, row)
                        else:
                            with cur.copy(self._copy) as copy:
                                copy.write_row(row)
                    except _ROW_FAULTS as exc:
                        return RecordRefused(self.name, where, exc)
                    cur.execute("RELEASE SAVEPOINT eok_row")
            return None
        finally:
            conn.rollback()

    def prepare(self, txn_id: str, offsets: Mapping[TP, int]) -> None:
        try:
            if self.mode == "two-phase":
                self._prepare_two_phase(txn_id, offsets)
            else:
                self._commit_with_offsets(offsets)
        except psycopg.OperationalError as exc:
            self._data.drop()
            raise SinkUnavailable(f"sink {self.name}: {exc}") from exc
        except psycopg.Error as exc:
            # A constraint, or a value of a type the checks at write time don't know.
            if isinstance(exc, _ROW_FAULTS):
                refused = self._find_refused()
                if refused is not None:
                    raise refused from exc
            self._data.drop()
            raise SinkRefused(
                f"sink {self.name}: PostgreSQL refused the batch of records "
                f"{_span(self._where)} for table {self.table}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            self._rows.clear()
            self._where.clear()

    def _find_refused(self) -> RecordRefused | None:
        try:
            return self._refused_row(self._data.conn)
        except psycopg.OperationalError as exc:
            self._data.drop()
            raise SinkUnavailable(f"sink {self.name}: {exc}") from exc
        except psycopg.Error:
            return None  # not one row's fault after all: the whole batch is refused

    def _prepare_two_phase(self, txn_id: str, offsets: Mapping[TP, int]) -> None:
        gid = gid_of(txn_id, self.name)
        doubts = self._record.note(gid, offsets)
        if doubts:
            raise SinkUnavailable(
                f"sink {self.name}: prepared transactions of an earlier owner of these "
                f"partitions or of this instance are in doubt ({', '.join(sorted(doubts))}): "
                "aborting so that recovery resolves them first"
            )
        faults.reached("postgres.after-control")
        conn = self._data.conn
        if not self._record.lock(conn, gid, len(offsets)):
            conn.rollback()
            raise SinkUnavailable(
                f"sink {self.name}: the record of transaction {txn_id} in eokafka_sink_prepared "
                f"was swept by a successor with instance id {self._instance!r} while this "
                "worker stalled: not preparing it"
            )
        self._send_rows(conn)
        self._prepared_gid = gid
        faults.reached("postgres.before-prepare")
        conn.execute(sql.SQL("PREPARE TRANSACTION {}").format(sql.Literal(gid)))
        faults.reached("postgres.after-prepare")

    def _commit_with_offsets(self, offsets: Mapping[TP, int]) -> None:
        unseen = {tp for tp in offsets if tp not in self._seen}
        if unseen:
            self.positions(unseen)
        conn = self._data.conn
        self._send_rows(conn)
        with conn.cursor() as cur:
            for (topic, partition), offset in sorted(offsets.items()):
                before = self._seen[(topic, partition)]
                if before is None:
                    cur.execute(
                        "INSERT INTO eokafka_offsets VALUES (%s, %s, %s, %s) "
                        "ON CONFLICT DO NOTHING",
                        (self._group, topic, partition, offset),
                    )
                else:
                    cur.execute(
                        "UPDATE eokafka_offsets SET next_offset = %s WHERE group_id = %s "
                        "AND topic = %s AND kafka_partition = %s AND next_offset = %s",
                        (offset, self._group, topic, partition, before),
                    )
                if cur.rowcount != 1:
                    conn.rollback()
                    raise SinkUnavailable(
                        f"the offset of {topic}[{partition}] in eokafka_offsets moved away "
                        f"from {before} (another worker wrote it): replaying from the database"
                    )
        conn.commit()
        faults.reached("postgres.after-commit")
        self._seen.update(offsets)

    def finish(self) -> None:
        gid, self._prepared_gid = self._prepared_gid, None
        if gid is not None:
            faults.reached("postgres.before-commit-prepared")
            self._record.end(gid, commit=True)

    def abort(self) -> None:
        self._rows.clear()
        self._where.clear()
        self._prepared_gid = None  # left to recover: only the committed offsets know its fate
        self._data.rollback()

    # -- recovery ------------------------------------------------------------------------

    def in_doubt(self, partitions: set[TP], instance_id: str) -> dict[str, set[TP]]:
        if self.mode != "two-phase":
            return {}
        return self._record.in_doubt(partitions, instance_id)

    def resolve(self, txn_id: str, commit: bool) -> None:
        self._record.end(gid_of(txn_id, self.name), commit)

    def positions(self, partitions: set[TP]) -> dict[TP, int]:
        if self.mode != "offsets-in-database" or not partitions:
            return {}
        rows = self._control.retry(
            lambda conn: conn.execute(
                "SELECT topic, kafka_partition, next_offset FROM eokafka_offsets "
                "WHERE group_id = %s",
                (self._group,),
            ).fetchall()
        )
        stored = {(t, p): o for t, p, o in rows if (t, p) in partitions}
        self._seen.update({tp: stored.get(tp) for tp in partitions})
        return stored

    def close(self) -> None:
        self._data.drop()
        self._control.drop()


def _span(where: list[Where]) -> str:
    if not where:
        return "no records"
    first, last = where[0], where[-1]
    return f"{first[0]}[{first[1]}]@{first[2]} .. {last[0]}[{last[1]}]@{last[2]}"
