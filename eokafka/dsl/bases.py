"""The bases of ``Stream`` and ``Table``: what each does without naming another fluent class.

The fluent classes return each other (a stream's grouping gives a table, whose updates are a
stream), so ``stream.py`` must declare them together; what needs none of the others is here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Self

from eokafka.dsl import operators as op
from eokafka.dsl.graph import Node, Root, Wrap
from eokafka.dsl.pipe import Pipe, TablePipe
from eokafka.serdes import Serde


class StreamBase:
    """A stream's operators that give back a stream running in the same processors, or end
    it; ``Stream`` adds those that group, join and merge."""

    def __init__(
        self,
        root: Root,
        node: Node,
        rekeyed: bool = False,
        more: tuple[tuple[Root, Node], ...] = (),
    ) -> None:
        self._pipe = Pipe(root, node, rekeyed, more)

    @classmethod
    def _of(cls, pipe: Pipe) -> Self:
        return cls(pipe.root, pipe.node, pipe.rekeyed, pipe.more)

    def _then(self, label: str, wrap: Wrap, rekeys: bool = False) -> Self:
        return self._of(self._pipe.then(label, wrap, rekeys))

    # -- stateless operators (fused into the source's processor) -------------------------

    def map(self, fn: Callable[[Any, Any], tuple[Any, Any]]) -> Self:
        """``fn(key, value) -> (new_key, new_value)``; a later aggregation repartitions."""
        return self._then("map", op.mapping(fn), rekeys=True)

    def map_values(self, fn: Callable[[Any], Any]) -> Self:
        """``fn(value) -> new_value``; keeps the key, so no repartition follows."""
        return self._then("map_values", op.mapping_values(fn))

    def filter(self, predicate: Callable[[Any, Any], Any]) -> Self:
        """Keep the records for which ``predicate(key, value)`` is true."""
        return self._then("filter", op.filtering(predicate))

    def flat_map(self, fn: Callable[[Any, Any], Iterable[tuple[Any, Any]]]) -> Self:
        """``fn(key, value) -> iterable of (key, value)``; zero, one or many records out."""
        return self._then("flat_map", op.flat_mapping(fn), rekeys=True)

    def peek(self, fn: Callable[[Any, Any], Any]) -> Self:
        """Call ``fn(key, value)`` for its side effect; it runs again if a batch is replayed."""
        return self._then("peek", op.peeking(fn))

    def split(
        self, branches: dict[str, Callable[[Any, Any], Any]], *, default: str | None = None
    ) -> dict[str, Self]:
        """Named branches: each record goes to the first branch whose ``predicate(key,
        value)`` holds, else to ``default`` (if named; otherwise nowhere).

        Returns the branch streams by name, ``default`` last. The branches run in this
        stream's processor, so a record's outputs in all of them are all-or-nothing.
        """
        return {name: self._of(p) for name, p in self._pipe.split(branches, default).items()}

    def to(
        self, topic: str, *, key_serde: Serde | None = None, value_serde: Serde | None = None
    ) -> None:
        """Send every record to ``topic`` inside the transaction."""
        self._pipe.to(topic, key_serde, value_serde)

    def to_sink(self, name: str, row: Callable[[Any, Any], Any] | None = None) -> None:
        """Write every record to the sink ``name`` (``app.sink(...)``) inside the transaction.

        ``row(key, value)`` makes the row (default: the value); it becomes visible exactly
        when the Kafka transaction commits.
        """
        self._pipe.to_sink(name, row)

    # -- re-keying -------------------------------------------------------------------------

    def repartition(
        self, name: str, *, key_serde: Serde | None = None, value_serde: Serde | None = None
    ) -> Self:
        """Route records by their current key through ``<application id>-<name>-repartition``."""
        return self._of(self._pipe.repartition(name, key_serde, value_serde, drop_null_keys=False))


class TableBase:
    """A table's store, keys and history, and where its updates go; ``Table`` adds the
    operators that make new tables and its updates as a stream."""

    joinable = True  # a stream can join it by key (windowed tables are keyed by window)

    def __init__(
        self,
        root: Root,
        node: Node,
        store: str | None,
        key_serde: Serde,
        history_ms: int | None = None,
        more: tuple[tuple[Root, Node], ...] = (),
    ) -> None:
        self._pipe = Pipe(root, node, False, more)  # several ends: a joined table's
        self.name = store  # the store holding the table; None if not kept in one
        self.key_serde = key_serde  # how its topic's keys are written (for co-partitioning)
        self.history_ms = history_ms  # a versioned table's (eokafka.dsl.asof), else None

    def _side(self) -> TablePipe:
        return TablePipe(self._pipe, self.name, self.key_serde, self.history_ms, self.joinable)

    def to(
        self, topic: str, *, key_serde: Serde | None = None, value_serde: Serde | None = None
    ) -> None:
        """Send every update to ``topic`` inside the transaction."""
        self._pipe.to(topic, key_serde, value_serde)

    def to_sink(self, name: str, row: Callable[[Any, Any], Any] | None = None) -> None:
        """Write every update to the sink ``name`` (see ``Stream.to_sink``)."""
        self._pipe.to_sink(name, row)
