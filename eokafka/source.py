"""The source protocol connectors implement to feed Kafka from outside (no Kafka client here).

A source reads records from elsewhere (files, a database table) and says where it stands
after them; the runtime (``eokafka.runtime.process.sources``) produces the records and that
position to ``<application id>-source-offsets`` in one Kafka transaction, so the position
Kafka holds is always exactly the one after the last records it committed.

A record says where it came from (:class:`Origin`: a file and line, a table and id), so
that one which can't be sent (too large for its topic, refused) goes to the app's
``on_error`` policy named by it. Input the source can't turn into a record at all (a line
that is not valid JSON or not UTF-8) is returned as :class:`Unreadable`, and goes to the
same policy; the position moves past it either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from eokafka.serdes import Serde

Position = Any  # JSON-serialisable; None before the first commit


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a source record came from: the source's name and, e.g., file, line and byte."""

    source: str
    fields: tuple[tuple[str, str], ...]  # ("file", path), ("line", "7"), ("byte", "123")

    def __str__(self) -> str:
        got = dict(self.fields)
        if not got:
            return f"source {self.source}"
        if "file" in got:
            where = f"{got['file']} line {got.get('line', '?')} (byte {got.get('byte', '?')})"
        else:
            where = ", ".join(f"{k} {v}" for k, v in self.fields)
        return f"source {self.source}: {where}"


class Read(NamedTuple):
    """A record read from the source, with its origin."""

    key: Any
    value: Any
    origin: Origin


class Unreadable(NamedTuple):
    """Input the source could not make a record of: its raw bytes, origin and the error."""

    raw: bytes
    origin: Origin
    error: Exception


# A plain ``(key, value)`` pair is a record without a known origin.
SourceItem = Read | Unreadable | tuple[Any, Any]


class SourceConnector(Protocol):
    name: str

    def open(self, application_id: str) -> None:
        """Connect and check the origin (folder, table); raise if unusable."""

    def seek(self, position: Position) -> None:
        """Continue after ``position`` (as last committed to Kafka; None: from the start)."""

    def poll(self, max_records: int) -> tuple[list[SourceItem], Position]:
        """Up to about ``max_records`` new items and the position after them."""

    def close(self) -> None:
        """Release files and connections; safe in any state (never opened, failed)."""


@dataclass(frozen=True)
class Feed:
    """A source connector feeding a topic, with the serdes its records are written with."""

    connector: SourceConnector
    topic: str
    key_serde: Serde
    value_serde: Serde
