"""One record of either side as ``eokafka verify`` sees it: where it is, its id, its values.

Values take a canonical text form, so a Kafka JSON value, a PostgreSQL row and a CSV line
compare alike (``79``, ``79.0``, ``Decimal("79.00")`` and ``"79"`` agree), except that null
stays None: null is neither ``""`` nor ``0`` nor ``false``. A CSV field can't say whether it
was null or ``""`` (the csv module writes None as an empty field) nor a bool or its text, so
CSV fields stay :class:`CsvText`, matched against the source's value by :func:`csv_matches`.

A record without a readable id (not JSON, not an object, a tombstone, the id missing or
null, bytes that are not UTF-8) is kept with its place and the reason, so the report can
name it instead of leaving it out of the count.
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "CsvText",
    "Loc",
    "Read",
    "Side",
    "Value",
    "canonical",
    "csv_matches",
    "from_json",
    "from_mapping",
]


class CsvText(str):
    """A field read from a CSV file: text whose type the file did not keep."""

    __slots__ = ()


Value = str | None
Loc = tuple[int, int]  # where a record is, in a side's own terms (see Side.where)


@dataclass(frozen=True, slots=True)
class Read:
    """One record: its place, and either its id and compared values, or why it has no id."""

    loc: Loc
    id: str | None
    values: tuple[Value, ...] = ()
    problem: str = ""


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Side:
    """The records of a source or destination, and how to name a place in it.

    ``total`` is how many records ``reads`` will give, roughly (for a progress bar), None
    when unknown; ``close`` releases what the side holds open (a connection, a consumer)
    when ``reads`` is not read to its end.
    """

    name: str  # kafka:<topic>, postgres:<table>, files:<folder>
    reads: Iterable[Read]
    where: Callable[[Loc], str]  # e.g. "orders[2]@1041", "ledger row (0,7)", "part.csv:12"
    total: int | None = None
    close: Callable[[], None] = _nothing


def canonical(value: object) -> Value:
    """One text form for a value read from JSON, PostgreSQL or CSV; None for null."""
    if value is None or isinstance(value, str):
        return value  # type: ignore[return-value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | decimal.Decimal):
        number = decimal.Decimal(repr(value)) if isinstance(value, float) else value
        if not number.is_finite():
            return str(value)
        if number == 0:
            return "0"
        return format(number.normalize(), "f")  # 79.50 and 79.5 agree, 1e-07 is 0.0000001
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def csv_matches(text: str, expected: Value) -> bool:
    """Whether a CSV field holds what a CSV writer makes of the value ``expected``."""
    if expected is None:
        return text == ""
    return text == expected or (text in ("True", "False") and text.lower() == expected)


def from_mapping(
    loc: Loc, record: Mapping[str, object], id_field: str, fields: Sequence[str]
) -> Read:
    """A decoded record (a JSON object, a table row, a CSV row) in comparable form."""
    if id_field not in record:
        return Read(loc, None, problem=f"no {id_field!r} field")
    raw_id = record[id_field]
    if raw_id is None:
        return Read(loc, None, problem=f"{id_field!r} is null")
    if isinstance(raw_id, CsvText) and raw_id == "":
        return Read(loc, None, problem=f"{id_field!r} is empty")
    values = tuple(
        v if isinstance(v, CsvText) else canonical(v) for v in map(record.get, fields)
    )
    return Read(loc, canonical(raw_id), values)


def from_json(
    loc: Loc, data: bytes | None, id_field: str, fields: Sequence[str]
) -> Read:
    """A Kafka value or a JSON Lines line; ``None`` is a tombstone."""
    if data is None:
        return Read(loc, None, problem="a tombstone (no value)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Read(loc, None, problem=f"not UTF-8 ({exc.reason} at byte {exc.start})")
    try:
        record = json.loads(text)
    except ValueError as exc:
        return Read(loc, None, problem=f"not JSON ({exc}): {_clip(text)}")
    if not isinstance(record, dict):
        return Read(loc, None, problem=f"a JSON {type(record).__name__}, not an object")
    return from_mapping(loc, record, id_field, fields)


def _clip(text: str, limit: int = 60) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")
