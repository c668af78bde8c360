"""The sink protocol connectors implement, and the writer processors use (no Kafka client here).

The runtime side (``eokafka.runtime.commit.sinks``) drives these methods around the Kafka commit;
see its docstring for the protocol and why the Kafka commit is the decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

TP = tuple[str, int]
Where = tuple[str, int, int]  # the input record a row came from: topic, partition, offset


class SinkUnavailable(Exception):
    """The sink lost its connection and the open transaction's writes with it: abort, replay."""


class RecordRefused(Exception):
    """The destination refused the row of one input record (a constraint, a value it rejects).

    The batch's writes are rolled back; the worker hands ``record`` to the poison policy and
    replays the transaction without it.
    """

    def __init__(self, sink: str, record: Where, cause: BaseException) -> None:
        topic, partition, offset = record
        super().__init__(
            f"sink {sink}: the row of {topic}[{partition}]@{offset} was refused: "
            f"{type(cause).__name__}: {cause}"
        )
        self.sink = sink
        self.record = record
        self.cause = cause


@dataclass(frozen=True)
class Committed:
    """A partition's committed offset and the id of the transaction that committed it."""

    offset: int
    txn_id: str


class Sink(Protocol):
    """What a connector implements; ``connectors.postgres`` and ``connectors.files`` do."""

    name: str
    # True when the sink commits the consumed offsets in its own database (not two-phase):
    # then nothing else may be written in the Kafka transaction, which could still abort.
    keeps_offsets: bool

    def open(self, application_id: str, instance_id: str) -> None:
        """Connect and check the destination (table, columns, settings); raise if unusable."""

    def row(self, value: Any) -> Any:
        """Check and convert one row at write time; raise if it can't be written."""

    def add(self, where: Where, row: Any) -> None:
        """Buffer a converted row of the open transaction."""

    def prepare(self, txn_id: str, offsets: Mapping[TP, int]) -> None:
        """Make the buffered rows durable, invisible, recoverable.

        Raise SinkUnavailable when the writes were lost with a connection, RecordRefused
        naming the first input record whose row the destination refuses.
        """

    def finish(self) -> None:
        """Make the prepared rows visible (the Kafka transaction committed)."""

    def abort(self) -> None:
        """Drop buffered rows and anything opened but not prepared."""

    def in_doubt(self, partitions: set[TP], instance_id: str) -> dict[str, set[TP]]:
        """Prepared writes (by txn id) covering ``partitions`` or left by ``instance_id``."""

    def resolve(self, txn_id: str, commit: bool) -> None:
        """Finish (commit) or undo a prepared write; a write already resolved is no error."""

    def positions(self, partitions: set[TP]) -> dict[TP, int]:
        """Offsets kept in the destination to seek to (empty unless it keeps its own)."""

    def close(self) -> None:
        """Release connections and files after a clean stop."""


class SinkWriter:
    """``ctx.sink(name)``: rows written here join the transaction if the processor returns."""

    __slots__ = ("_sink", "_staged")

    def __init__(self, sink: Sink, staged: list[tuple[Sink, Any]]) -> None:
        self._sink = sink
        self._staged = staged

    def write(self, value: Any) -> None:
        """Check and stage one row; a row that doesn't fit raises here, naming the column."""
        self._staged.append((self._sink, self._sink.row(value)))
