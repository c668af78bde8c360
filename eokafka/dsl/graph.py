"""The compiled form of a DSL pipeline: operator nodes and the processor that runs them.

Operators become nested closures built once per processor, so a fused chain costs plain
function calls per record; there is no per-record dispatch on operator kinds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final, Protocol

from eokafka.dsl.late import LateRecords
from eokafka.errors import TopologyError
from eokafka.on_error import OnError
from eokafka.serdes import Bytes, Serde
from eokafka.topology import Source, Topology

Emit = Callable[[Any, Any, Any], None]  # (key, value, ctx)
TimestampFn = Callable[[Any], int]  # a Record -> its event time (ms)
Wrap = Callable[[Emit], Emit]  # given the downstream emit, build this operator's emit
MISSING: Final = object()
_NAME: Final = re.compile(r"[A-Za-z0-9._-]+")


class PipelineApp(Protocol):
    """What a pipeline needs of the App it is declared in (``eokafka.App`` is one): the id
    that prefixes its internal topics, and the topology its processors go into."""

    @property
    def application_id(self) -> str: ...

    @property
    def topology(self) -> Topology: ...


def check_name(what: str, name: str) -> str:
    """Names become topic names: fail at declaration, not when the worker creates topics."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise TopologyError(f"{what} {name!r} must be letters, digits, '.', '_' or '-'")
    return name


def _drop(key: Any, value: Any, ctx: Any) -> None:
    """The downstream of an operator nothing is chained to."""


def identity(nxt: Emit) -> Emit:
    """An operator that passes every record on (a source, a merge)."""
    return nxt


class Node:
    """One operator; ``wrap`` turns its children's emit into its own (closures, no dispatch)."""

    __slots__ = ("label", "wrap", "children")

    def __init__(self, label: str, wrap: Wrap) -> None:
        self.label = label
        self.wrap = wrap
        self.children: list[Node] = []

    def compile(self) -> Emit:
        outs = [child.compile() for child in self.children]
        if not outs:
            return self.wrap(_drop)
        if len(outs) == 1:
            return self.wrap(outs[0])

        def fan_out(key: Any, value: Any, ctx: Any) -> None:
            for out in outs:
                out(key, value, ctx)

        return self.wrap(fan_out)

    def describe(self) -> str:
        below = [child.describe() for child in self.children]
        if not below:
            return self.label
        if len(below) == 1:
            return f"{self.label} > {below[0]}"
        return f"{self.label} > [{' | '.join(below)}]"


class Root:
    """The one processor of a source topic, running the operator tree hung below it.

    It is registered at once and re-registered (same function, new name and stores) whenever
    the tree grows, so ``describe()`` shows the pipeline and joins can add the stores they read.
    While a record runs through the tree, ``record`` is that record and ``ts`` the event time
    ``timestamp(record)`` gave it (None without an extractor), for windows and sinks.
    """

    def __init__(
        self,
        app: PipelineApp,
        topic: str,
        kind: str,
        key_serde: Serde | None,
        value_serde: Serde | None,
        like: str | None = None,
        timestamp: TimestampFn | None = None,
    ) -> None:
        self.app = app
        self.timestamp = timestamp
        self.record: Any = None
        self.ts: int | None = None
        self.topic = topic
        self.key_serde: Serde = key_serde or Bytes()
        self.like = like or topic  # an external topic with this topic's partition count
        self.node = Node(kind, identity)
        self.stores: list[str] = []
        self.outputs: list[str] = []
        self.globals: list[str] = []  # global tables its operators read (describe)
        self._emit: Emit | None = None
        self.late = LateRecords()  # windowed aggregations note a late record here
        self.on_error: OnError | None = None
        self._source = Source(
            name=self.node.describe(),
            topic=topic,
            fn=self.process,
            key_serde=self.key_serde,
            value_serde=value_serde or Bytes(),
        )
        app.topology.add_source(self._source)

    def process(self, record: Any, ctx: Any) -> None:
        emit = self._emit
        if emit is None:
            emit = self.compiled()
        self.record = record
        late = self.late
        if late.notes:  # left by a record that raised half-way
            late.notes.clear()
        if self.timestamp is not None:
            self.ts = check_timestamp(self.timestamp(record), "the stream's timestamp=")
        emit(record.key, record.value, ctx)
        if late.notes:
            late.flush(f"{record.topic}[{record.partition}]@{record.offset}")

    def compiled(self) -> Emit:
        """The operator tree, compiled at first use (operators keep what they compiled)."""
        if self._emit is None:
            self._emit = self.node.compile()
        return self._emit

    def add(self, parent: Node, label: str, wrap: Wrap) -> Node:
        node = Node(label, wrap)
        parent.children.append(node)
        self._changed()
        return node

    def add_store(self, name: str) -> None:
        if name not in self.stores:
            self.stores.append(name)
            self._changed()

    def set_on_error(self, on_error: OnError) -> None:
        """This processor's own ``on_error`` (see ``eokafka.on_error``)."""
        self.on_error = on_error
        self._changed()

    def add_global(self, name: str) -> None:
        """A global table this processor's operators read, for ``describe``."""
        if name not in self.globals:
            self.globals.append(name)
            self._changed()

    def add_output(self, topic: str) -> None:
        """A topic this processor sends to, for ``describe``."""
        if topic not in self.outputs:
            self.outputs.append(topic)
            self._changed()

    def _changed(self) -> None:
        self._emit = None
        sources = self.app.topology.sources
        at = next(i for i, s in enumerate(sources) if s is self._source)
        self._source = replace(
            self._source,
            name=self.node.describe(),
            stores=tuple(self.stores),
            outputs=tuple(self.outputs),
            on_error=self.on_error,
            globals=tuple(self.globals),
        )
        sources[at] = self._source


def claim_store(app: PipelineApp, name: str, what: str) -> str:
    """One table or aggregation per store: two writers would corrupt each other's state."""
    check_name("store name", name)
    if name in app.topology.global_tables or any(name in s.stores for s in app.topology.sources):
        raise TopologyError(
            f"{what}: store {name!r} is already used by another processor or global table; "
            "give this one its own name="
        )
    return name


def check_timestamp(ts: Any, what: str) -> int:
    """Event times are non-negative epoch milliseconds; anything else is a poison record."""
    if type(ts) is not int or ts < 0:
        raise ValueError(f"{what} gave {ts!r}; an event time must be an int >= 0 (epoch ms)")
    return ts


def record_time(root: Root, what: str) -> int:
    """The time of the record ``root`` is processing: its event time, else its timestamp."""
    if root.ts is not None:
        return root.ts
    return check_timestamp(root.record.timestamp, f"the record timestamp of {what}")


def emit_at(root: Root, ts: int, nxt: Emit, key: Any, value: Any, ctx: Any) -> None:
    """``nxt(key, value, ctx)`` at time ``ts``: what sinks and windows below it see (a join
    result's time)."""
    saved = root.ts
    root.ts = ts
    try:
        nxt(key, value, ctx)
    finally:
        root.ts = saved


def sink(
    topic: str, key_serde: Serde | None, value_serde: Serde | None, root: Root | None = None
) -> Wrap:
    """An operator that ends a branch by sending into the transaction (``to``, repartition).

    Outputs carry the event time ``root.ts`` where there is one (the extracted event time
    under a source with a timestamp extractor, a join result's time), so a window after a
    repartition sees it; otherwise the input record's timestamp.
    """

    if root is not None:
        root.add_output(topic)

    def wrap(_nxt: Emit) -> Emit:
        if root is not None:

            def emit_timed(key: Any, value: Any, ctx: Any) -> None:
                ctx.send(
                    topic,
                    key=key,
                    value=value,
                    key_serde=key_serde,
                    value_serde=value_serde,
                    timestamp=root.ts,
                )

            return emit_timed

        def emit(key: Any, value: Any, ctx: Any) -> None:
            ctx.send(topic, key=key, value=value, key_serde=key_serde, value_serde=value_serde)

        return emit

    return wrap
