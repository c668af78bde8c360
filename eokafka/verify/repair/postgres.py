"""Repair a PostgreSQL table in one transaction, with the rows its sink would have written.

Rows are made by the app's ``PostgresSink`` (``--app``, the sink writing to this table), or
by a ``PostgresSink`` with its defaults (every column without a default, filled from the
same-named field), through ``PostgresSink.table_rows``: the very conversion the sink uses.

Rows to delete or update are named by their ctid as the check saw them; the repair
transaction locks them (``FOR UPDATE``) and checks each still holds the id the plan
expects, or changes nothing. A session advisory lock, held from before the check to the
commit, keeps two repairs of one table apart. The running sink needs no lock: it never
writes a record below its committed offsets again (see ``eokafka.verify.line``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from eokafka.errors import ConfigError, EokafkaError
from eokafka.sink import Sink
from eokafka.verify import Checked, CheckOptions
from eokafka.verify.line import wait_for_prepared
from eokafka.verify.progress import Progress
from eokafka.verify.readers import ctid
from eokafka.verify.records import Loc, from_mapping
from eokafka.verify.repair.fetch import fetch, value_of
from eokafka.verify.repair.plan import Capabilities, Done, Item, Plan

if TYPE_CHECKING:
    from connectors.postgres import PostgresSink


_LOCK_WAIT = 30.0  # seconds a row or table lock of another writer may hold the repair up


class TableChanged(EokafkaError):
    """A row the plan names is not what the check saw: something else writes the table."""


def find_sink(sinks: Mapping[str, Sink], table: str) -> PostgresSink | None:
    from connectors.postgres import PostgresSink

    for sink in sinks.values():
        if isinstance(sink, PostgresSink) and sink.table == table:
            return sink
    return None


class PostgresRepair:
    """Plans and applies the changes to ``postgres:<table>``."""

    can = Capabilities(remove=True, fix=True)

    def __init__(self, opts: CheckOptions, sink: PostgresSink | None) -> None:
        from connectors.postgres import PostgresSink

        assert opts.dsn is not None
        self.opts = opts
        self.dsn = opts.dsn
        self.table = opts.target.where
        self.sink = sink or PostgresSink("eokafka-repair", self.dsn, self.table)
        self._rows: dict[int, tuple[Any, ...]] = {}  # by id() of an add or fix item
        self._names: list[str] = []
        self._insert: sql.Composed | None = None

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            key = f"eokafka-repair:{self.table}"
            row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
                               (key,)).fetchone()
            if row is None or not row[0]:
                raise ConfigError(f"another repair of table {self.table} is running")
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))

    def unguarded(self) -> None:
        """A prepared transaction (a sink's, left by a worker that died) may commit rows yet."""
        wait_for_prepared(self.dsn, self.table, self.opts.prepared_wait)

    def prepare(self, plan: Plan, checked: Checked, progress: Progress) -> None:
        """Fetch and convert the rows to write; a record the table can't take is left."""
        from connectors.postgres.table import RowError, insert_sql

        writes = [i for i in plan.items if i.action in ("add", "fix")]
        if writes:
            with psycopg.connect(self.dsn) as conn:
                rows = self.sink.table_rows(conn)
            self._names = rows.names
            self._insert = insert_sql(self.table, rows.names, self.sink.key)
            if self.opts.id_field not in rows.names:
                for item in writes:
                    item.leave(f"the sink does not write the id column {self.opts.id_field!r}")
                writes = []
            found = fetch(self.opts.bootstrap, self.opts.source,
                          [i.source_loc for i in writes if i.source_loc], progress)
            for item in writes:
                assert item.source_loc is not None
                try:
                    self._rows[id(item)] = rows.convert(value_of(found[item.source_loc]))
                except RowError as exc:
                    item.leave(f"the table can't take the source record: {exc}")
        adds, removes, fixes = (len(plan.of(a)) for a in ("add", "remove", "fix"))
        if adds or removes or fixes:
            plan.steps.append(
                f"in one transaction on {self.table}: insert {adds} rows, delete {removes}, "
                f"update {fixes}"
            )

    def apply(self, plan: Plan, progress: Progress) -> Done:
        removes, fixes, adds = plan.of("remove"), plan.of("fix"), plan.of("add")
        step = progress.step(f"repairing {self.table}", len(removes) + len(fixes) + len(adds))
        name = sql.Identifier(*self.table.split("."))
        with psycopg.connect(self.dsn) as conn:
            conn.execute(f"SET lock_timeout = '{int(_LOCK_WAIT * 1000)}ms'")
            self._check_rows(conn, name, removes + fixes)
            with conn.cursor() as cur:
                if removes:
                    cur.execute(
                        sql.SQL("DELETE FROM {} WHERE ctid = ANY(%s::tid[])").format(name),
                        ([_tid(i.loc) for i in removes],),
                    )
                    step.advance(len(removes))
                if fixes:
                    update = sql.SQL("UPDATE {} SET ({}) = ROW({}) WHERE ctid = %s::tid").format(
                        name,
                        sql.SQL(", ").join(map(sql.Identifier, self._names)),
                        sql.SQL(", ").join(sql.Placeholder() * len(self._names)),
                    )
                    cur.executemany(update, [(*self._rows[id(i)], _tid(i.loc)) for i in fixes])
                    step.advance(len(fixes))
                if adds:
                    assert self._insert is not None
                    cur.executemany(self._insert, [self._rows[id(i)] for i in adds])
                    step.advance(len(adds))
            conn.commit()
        step.finish()
        return Done(len(adds), len(removes), len(fixes),
                    [f"committed one transaction on {self.table}"])

    def _check_rows(self, conn: psycopg.Connection[Any], name: sql.Identifier,
                    items: list[Item]) -> None:
        """Lock the rows to delete or update; each must hold the id the plan names."""
        if not items:
            return
        cols = [self.opts.id_field, *self.opts.fields]
        query = sql.SQL("SELECT ctid::text, {} FROM {} WHERE ctid = ANY(%s::tid[]) FOR UPDATE")
        query = query.format(sql.SQL(", ").join(map(sql.Identifier, cols)), name)
        now: dict[Loc, str | None] = {}
        for place, *row in conn.execute(query, ([_tid(i.loc) for i in items],)):
            read = from_mapping((0, 0), dict(zip(cols, row, strict=True)), self.opts.id_field,
                                self.opts.fields)
            now[ctid(place)] = read.id
        for item in items:
            assert item.loc is not None
            if item.loc not in now or now[item.loc] != item.id:
                conn.rollback()
                raise TableChanged(
                    f"row {_tid(item.loc)} of {self.table} no longer holds "
                    f"{'id ' + item.id if item.id is not None else 'the row'} the check saw "
                    "(another writer changed the table): nothing was changed, run the repair "
                    "again"
                )


def _tid(loc: Loc | None) -> str:
    assert loc is not None
    return f"({loc[0]},{loc[1]})"
