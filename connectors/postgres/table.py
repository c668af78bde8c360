"""A destination table: its columns as PostgreSQL reports them, and rows checked against them.

Rows are checked in Python when the processor writes them, so a row that can't fit (a
string in an integer column, a missing NOT NULL value, a text too long) raises inside the
processor and the poison policy names its record, instead of failing a whole batch later.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from eokafka.errors import ConfigError

Extract = Callable[[Any], Any]
_INT_RANGE = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}


class RowError(ValueError):
    """A row that does not fit the table; the message names the table, column and value."""


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str
    nullable: bool
    has_default: bool
    max_length: int | None


def _check_int(col: Column, v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError
    low, high = _INT_RANGE[col.data_type]
    if not low <= v <= high:
        raise OverflowError
    return v


def _check_number(_col: Column, v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, int | float | decimal.Decimal):
        raise TypeError
    return v


def _check_text(col: Column, v: Any) -> Any:
    if not isinstance(v, str):
        raise TypeError
    if col.max_length is not None and len(v) > col.max_length:
        raise OverflowError
    if "\x00" in v:
        raise ValueError
    return v


def _check_bool(_col: Column, v: Any) -> Any:
    if not isinstance(v, bool):
        raise TypeError
    return v


def _check_timestamp(col: Column, v: Any) -> Any:
    if isinstance(v, str):
        v = dt.datetime.fromisoformat(v)
    if not isinstance(v, dt.datetime | dt.date):
        raise TypeError
    if col.data_type == "date" and isinstance(v, dt.datetime):
        return v.date()
    return v


def _check_uuid(_col: Column, v: Any) -> Any:
    return v if isinstance(v, uuid.UUID) else uuid.UUID(str(v))


def _check_bytes(_col: Column, v: Any) -> Any:
    if not isinstance(v, bytes | bytearray | memoryview):
        raise TypeError
    return bytes(v)


_CHECKS: dict[str, Callable[[Column, Any], Any]] = {
    "smallint": _check_int,
    "integer": _check_int,
    "bigint": _check_int,
    "numeric": _check_number,
    "real": _check_number,
    "double precision": _check_number,
    "text": _check_text,
    "character varying": _check_text,
    "character": _check_text,
    "boolean": _check_bool,
    "json": lambda _c, v: Jsonb(v),
    "jsonb": lambda _c, v: Jsonb(v),
    "timestamp with time zone": _check_timestamp,
    "timestamp without time zone": _check_timestamp,
    "date": _check_timestamp,
    "uuid": _check_uuid,
    "bytea": _check_bytes,
}


def read_columns(conn: psycopg.Connection[Any], table: str) -> dict[str, Column]:
    """The table's columns; ``table`` may be ``schema.table``; raise if it doesn't exist."""
    schema, _, name = table.rpartition(".")
    rows = conn.execute(
        "SELECT column_name, data_type, is_nullable = 'YES', column_default IS NOT NULL "
        "OR is_identity = 'YES', character_maximum_length FROM information_schema.columns "
        "WHERE table_name = %s AND table_schema = COALESCE(NULLIF(%s, ''), current_schema()) "
        "ORDER BY ordinal_position",
        (name, schema),
    ).fetchall()
    conn.rollback()
    if not rows:
        raise ConfigError(f"PostgreSQL table {table!r} does not exist (or has no columns)")
    return {r[0]: Column(r[0], r[1], r[2], r[3], r[4]) for r in rows}


class TableRows:
    """Turns record values into tuples in the table's column order, checking each value."""

    def __init__(
        self,
        table: str,
        columns: dict[str, Column],
        mapping: Sequence[str] | Mapping[str, str | Extract] | None,
        key: Sequence[str] = (),
    ) -> None:
        self.table = table
        if mapping is None:
            mapping = [c.name for c in columns.values() if not c.has_default]
        if not isinstance(mapping, Mapping):
            mapping = {c: c for c in mapping}
        unknown = [c for c in (*mapping, *key) if c not in columns]
        if unknown:
            raise ConfigError(
                f"PostgreSQL table {table!r} has no column {unknown[0]!r} "
                f"(its columns: {', '.join(columns)})"
            )
        missing_key = [k for k in key if k not in mapping]
        if missing_key:
            raise ConfigError(f"upsert key column {missing_key[0]!r} of {table!r} is not written")
        self.names = list(mapping)
        self._columns = [columns[c] for c in self.names]
        self._extract: list[Extract] = [
            (lambda v, f=src: v[f]) if isinstance(src, str) else src for src in mapping.values()
        ]
        self._checks = [_CHECKS.get(c.data_type, lambda _c, v: v) for c in self._columns]

    def convert(self, value: Any) -> tuple[Any, ...]:
        out = []
        for col, extract, check in zip(self._columns, self._extract, self._checks, strict=True):
            try:
                v = extract(value)
            except (KeyError, IndexError, TypeError):
                v = None
            if v is None:
                if not col.nullable:
                    raise RowError(f"{self.table}.{col.name} is NOT NULL but the row has no value")
                out.append(None)
                continue
            try:
                out.append(check(col, v))
            except (TypeError, ValueError, OverflowError) as exc:
                shown = repr(v)[:80]
                length = f"({col.max_length})" if col.max_length else ""
                raise RowError(
                    f"{self.table}.{col.name} ({col.data_type}{length}) can't take {shown}"
                ) from exc
        return tuple(out)


def _ident(table: str) -> sql.Composable:
    return sql.Identifier(*table.split("."))


def insert_sql(table: str, names: Sequence[str], key: Sequence[str]) -> sql.Composed:
    """INSERT, or an upsert (``ON CONFLICT (key) DO UPDATE``) when key columns are given."""
    cols = sql.SQL(", ").join(map(sql.Identifier, names))
    marks = sql.SQL(", ").join(sql.Placeholder() * len(names))
    stmt = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(_ident(table), cols, marks)
    if not key:
        return stmt
    rest = [n for n in names if n not in key]
    action = (
        sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in rest
            )
        )
        if rest
        else sql.SQL("DO NOTHING")
    )
    keys = sql.SQL(", ").join(map(sql.Identifier, key))
    return sql.SQL("{} ON CONFLICT ({}) {}").format(stmt, keys, action)


def copy_sql(table: str, names: Sequence[str]) -> sql.Composed:
    cols = sql.SQL(", ").join(map(sql.Identifier, names))
    return sql.SQL("COPY {} ({}) FROM STDIN").format(_ident(table), cols)
