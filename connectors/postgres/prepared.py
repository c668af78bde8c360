"""How a two-phase PostgresSink finds its prepared transactions again (invariant 12).

Recovery starts from PostgreSQL's own record of them, ``pg_prepared_xacts``, never from
bookkeeping alone. A prepared transaction's id (gid) is ``eok:<txn id>:<sink>``, where the
Kafka transaction id is ``<application id>:<instance id>:<start ms>:<n>`` (made by
``eokafka.runtime.commit.sinks``): the gid names the app, the instance, the sink and the Kafka
transaction whose committed offsets decide it.

The partitions it covers (whose committed offsets are read) can be too many for a gid's 200
characters, so they are rows of ``eokafka_sink_prepared``, written (autocommit) before the
transaction prepares. The transaction itself then locks its rows (``FOR SHARE``) and checks
they are all there before its ``PREPARE TRANSACTION``: from then on nobody can delete them
until it is resolved (locks survive the PREPARE and a server restart). Rows of a transaction
that never prepared are swept on every recovery, but only rows no transaction holds
(``SKIP LOCKED``). So a worker that stalled between writing its rows and preparing (a GC or
VM pause) while a successor with its instance id started either finds its rows swept and
does not prepare (it is a zombie), or prepares with its rows locked, where every recovery
and the successor's next transaction with rows (which looks for such transactions first)
find them.

A prepared transaction of this sink without any rows covered no partition, or was left by an
earlier version of this sink, whose successor deleted the rows of a zombie about to prepare
(the zombie's Kafka commit came after the successor fenced it, so it never happened). Either
way no committed offset names it: its own instance rolls it back; another instance's is
left to that instance, with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from connectors.postgres.connection import Reconnecting
from eokafka.sink import TP

log = logging.getLogger("connectors.postgres")

PREFIX = "eok:"
DDL = """
CREATE TABLE IF NOT EXISTS eokafka_sink_prepared (
    gid text NOT NULL,
    application_id text NOT NULL,
    instance_id text NOT NULL,
    topic text NOT NULL,
    kafka_partition int NOT NULL,
    end_offset bigint NOT NULL,
    PRIMARY KEY (gid, topic, kafka_partition)
);
"""
# Prepared transactions of one app and sink (gid prefix and suffix), with their rows if any.
_FIND = """
SELECT x.gid, i.application_id, i.instance_id, i.topic, i.kafka_partition
FROM pg_prepared_xacts x LEFT JOIN eokafka_sink_prepared i ON i.gid = x.gid
WHERE x.database = current_database()
AND left(x.gid, %(prefix_len)s) = %(prefix)s AND right(x.gid, %(suffix_len)s) = %(suffix)s
"""
# The rows of a transaction about to prepare; the same statement reports those in doubt.
_NOTE = (
    """
WITH noted AS (
    INSERT INTO eokafka_sink_prepared
    SELECT %(gid)s, %(app)s, %(instance)s, u.topic, u.kafka_partition, u.end_offset
    FROM unnest(%(topics)s::text[], %(partitions)s::int[], %(offsets)s::bigint[])
        AS u(topic, kafka_partition, end_offset)
    ON CONFLICT DO NOTHING
)"""
    + _FIND
)
_LOCK = (
    "SELECT count(*) FROM (SELECT 1 FROM eokafka_sink_prepared WHERE gid = %s FOR SHARE) AS noted"
)
# Rows of this instance's transactions that never prepared and that no transaction holds.
_SWEEP = """
DELETE FROM eokafka_sink_prepared WHERE ctid IN (
    SELECT ctid FROM eokafka_sink_prepared
    WHERE application_id = %s AND instance_id = %s AND right(gid, %s) = %s
    AND gid NOT IN (SELECT gid FROM pg_prepared_xacts)
    FOR UPDATE SKIP LOCKED
)
"""
Found = tuple[str, str | None, str | None, str | None, int | None]


def gid_of(txn_id: str, sink: str) -> str:
    return f"{PREFIX}{txn_id}:{sink}"


class PreparedRecord:
    """The prepared transactions of one sink of one app: noting, locking, finding, sweeping."""

    def __init__(self, control: Reconnecting, sink: str) -> None:
        self._control = control
        self.sink = sink
        self.application_id = ""
        self.instance_id = ""

    def bind(self, application_id: str, instance_id: str) -> None:
        self.application_id, self.instance_id = application_id, instance_id

    def _keys(self) -> dict[str, Any]:
        prefix, suffix = f"{PREFIX}{self.application_id}:", f":{self.sink}"
        return {
            "prefix": prefix,
            "prefix_len": len(prefix),
            "suffix": suffix,
            "suffix_len": len(suffix),
        }

    def note(self, gid: str, offsets: Mapping[TP, int]) -> dict[str, set[TP]]:
        """Record the partitions ``gid`` covers; the transactions this worker must resolve
        before it prepares (a zombie's that prepared after this worker's last recovery)."""
        ordered = sorted(offsets.items())
        params = {
            **self._keys(),
            "gid": gid,
            "app": self.application_id,
            "instance": self.instance_id,
            "topics": [t for (t, _), _ in ordered],
            "partitions": [p for (_, p), _ in ordered],
            "offsets": [o for _, o in ordered],
        }
        found = self._control.conn.execute(_NOTE, params).fetchall()
        return self._doubts(found, set(offsets), self.instance_id)

    @staticmethod
    def lock(conn: psycopg.Connection[Any], gid: str, expected: int) -> bool:
        """In the transaction about to prepare: hold its rows; False if any was swept."""
        row = conn.execute(_LOCK, (gid,)).fetchone()
        return row is not None and int(row[0]) == expected

    def in_doubt(self, partitions: set[TP], instance_id: str) -> dict[str, set[TP]]:
        """Sweep this instance's rows that never prepared; prepared transactions (by Kafka
        transaction id) covering ``partitions`` or left by ``instance_id``."""

        def look(conn: psycopg.Connection[Any]) -> list[Found]:
            suffix = f":{self.sink}"
            conn.execute(_SWEEP, (self.application_id, self.instance_id, len(suffix), suffix))
            return conn.execute(_FIND, self._keys()).fetchall()

        return self._doubts(self._control.retry(look), partitions, instance_id)

    def _txn_id(self, gid: str) -> str | None:
        """The Kafka transaction id in a gid of this app and sink, None if it is not one."""
        suffix = f":{self.sink}"
        if not (gid.startswith(f"{PREFIX}{self.application_id}:") and gid.endswith(suffix)):
            return None
        txn_id = gid[len(PREFIX) : -len(suffix)]
        return txn_id if re.fullmatch(r".+:\d+:\d+", txn_id) else None

    def _doubts(
        self, found: list[Found], partitions: set[TP], instance_id: str
    ) -> dict[str, set[TP]]:
        covers: dict[str, set[TP]] = {}
        owners: dict[str, str] = {}
        for gid, app, instance, topic, partition in found:
            txn_id = self._txn_id(gid)
            if txn_id is None:
                continue  # another sink whose name ends like this one's
            if app is None:  # no rows: see the module's docstring
                mine = f"{self.application_id}:{instance_id}:"
                if re.fullmatch(re.escape(mine) + r"\d+:\d+", txn_id):
                    owners[txn_id] = instance_id
                    covers[txn_id] = set()
                else:
                    log.warning(
                        "sink %s: prepared transaction %s has no record of its partitions; "
                        "left to the instance that made it",
                        self.sink,
                        gid,
                    )
                continue
            if app != self.application_id or instance is None:
                continue  # an app whose id starts like this one's
            if topic is not None and partition is not None:
                owners[txn_id] = instance
                covers.setdefault(txn_id, set()).add((topic, partition))
        return {
            txn_id: tps
            for txn_id, tps in covers.items()
            if tps & partitions or owners[txn_id] == instance_id
        }

    def end(self, gid: str, commit: bool) -> None:
        """COMMIT or ROLLBACK PREPARED, then forget its rows; already ended is no error."""
        verb = "COMMIT PREPARED" if commit else "ROLLBACK PREPARED"

        def end(conn: psycopg.Connection[Any]) -> None:
            # Already resolved, by this worker before a lost reply or by another.
            with contextlib.suppress(pgerrors.UndefinedObject):
                conn.execute(sql.SQL(verb + " {}").format(sql.Literal(gid)))
            conn.execute("DELETE FROM eokafka_sink_prepared WHERE gid = %s", (gid,))

        self._control.retry(end)
