"""The source protocol connectors implement to feed Kafka from outside (no Kafka client here).

A source reads records from elsewhere (files, a database table) and says where it stands
after them; the runtime (``eokafka.runtime.process.sources``) produces the records and that
position to ``<application id>-source-offsets`` in one Kafka transaction, so the position
Kafka holds is always exactly the one after the last records it committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from eokafka.serdes import Serde

Position = Any  # JSON-serialisable; None before the first commit


class SourceConnector(Protocol):
    name: str

    def open(self, application_id: str) -> None:
        """Connect and check the origin (folder, table); raise if unusable."""

    def seek(self, position: Position) -> None:
        """Continue after ``position`` (as last committed to Kafka; None: from the start)."""

    def poll(self, max_records: int) -> tuple[list[tuple[Any, Any]], Position]:
        """Up to about ``max_records`` new (key, value) pairs and the position after them."""

    def close(self) -> None:
        """Release files and connections."""


@dataclass(frozen=True)
class Feed:
    """A source connector feeding a topic, with the serdes its records are written with."""

    connector: SourceConnector
    topic: str
    key_serde: Serde
    value_serde: Serde
