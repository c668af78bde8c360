"""Where a stream or a table flows from, as a plain value the fluent classes wrap.

The builders of each job (joins, groupings, table operations) take and return these values,
so they need none of the fluent classes, which return each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eokafka.dsl import operators as op
from eokafka.dsl.graph import Node, Root, Wrap, sink
from eokafka.errors import TopologyError
from eokafka.serdes import Serde

End = tuple[Root, Node]


@dataclass(frozen=True)
class Pipe:
    """The (processor, operator) end the next operator hangs under, and the other processors'
    ends when several feed one stream (a join's two sides, a merge): every operator chained
    on is hung under each, so a record's outputs stay in its own processor's transaction."""

    root: Root
    node: Node
    rekeyed: bool = False  # the key may differ from the one the topic is partitioned by
    more: tuple[End, ...] = ()

    def tips(self) -> list[End]:
        return [(self.root, self.node), *self.more]

    def then(self, label: str, wrap: Wrap, rekeys: bool = False) -> Pipe:
        return self.then_each(label, lambda _root: wrap, rekeys)

    def then_each(self, label: str, make: Callable[[Root], Wrap], rekeys: bool = False) -> Pipe:
        """Hang an operator under every end, ``make(root)`` giving each processor's own."""
        tips = [(root, root.add(node, label, make(root))) for root, node in self.tips()]
        return Pipe(tips[0][0], tips[0][1], self.rekeyed or rekeys, tuple(tips[1:]))

    def joined(self, *others: Pipe, rekeyed: bool = False) -> Pipe:
        """One pipe fed by this one's ends and the others'."""
        ends = (end for other in others for end in other.tips())
        return Pipe(self.root, self.node, rekeyed, (*self.more, *ends))

    def add_store(self, name: str) -> None:
        """Open store ``name`` in every processor that feeds this pipe."""
        for root, _ in self.tips():
            root.add_store(name)

    def repartition(
        self, name: str, key_serde: Serde | None, value_serde: Serde | None, drop_null_keys: bool
    ) -> Pipe:
        root = op.repartition(
            self.root, self.node, name, key_serde, value_serde, drop_null_keys, self.more
        )
        return Pipe(root, root.node)

    def split(
        self, branches: dict[str, Callable[[Any, Any], Any]], default: str | None
    ) -> dict[str, Pipe]:
        if not branches:
            raise TopologyError("split() needs at least one branch: {name: predicate(key, value)}")
        for name, predicate in branches.items():
            if not isinstance(name, str) or not callable(predicate):
                raise TopologyError(
                    f"split(): branch {name!r} must map a str name to a callable "
                    f"predicate(key, value), not {predicate!r}"
                )
        if default is not None and default in branches:
            raise TopologyError(f"split(): the default branch {default!r} is also a named branch")
        names = [*branches, *([default] if default is not None else [])]
        choose, *each = op.splitting(list(branches.values()), default is not None)
        chosen = self.then(f"split({', '.join(names)})", choose)
        return {
            name: chosen.then(f"branch({name})", wrap)
            for name, wrap in zip(names, each, strict=True)
        }

    def to(self, topic: str, key_serde: Serde | None, value_serde: Serde | None) -> None:
        self.then_each(f"to({topic})", lambda root: sink(topic, key_serde, value_serde, root))

    def to_sink(self, name: str, row: Callable[[Any, Any], Any] | None) -> None:
        if name not in self.root.app.topology.sinks:
            raise TopologyError(f"to_sink({name!r}): no sink of that name; add it with app.sink")
        self.then(f"to_sink({name})", op.writing_sink(name, row))


@dataclass(frozen=True)
class TablePipe:
    """What a join needs of a table: where its updates flow from, the store that holds it
    (None: not kept in one), its topic's key serde (for co-partitioning) and its history."""

    pipe: Pipe
    name: str | None
    key_serde: Serde
    history_ms: int | None
    joinable: bool  # keyed like its topic (a windowed table is keyed by window)

    def check_stored(self, what: str) -> None:
        if self.name is None:
            raise TopologyError(
                f"{what}: the table made by filter/map_values is not kept in a store; give "
                "it name= (table.filter(..., name=...)) to join it"
            )
