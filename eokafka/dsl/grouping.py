"""Where a grouping's aggregations are declared (``GroupedStream`` in ``stream.py``,
``WindowedStream`` in ``windowed_stream.py``): the one repartition a grouping may need,
aggregations on a key-value store (``operators.aggregating``) and windowed ones on a window
store (``windowed.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eokafka.dsl import operators as op
from eokafka.dsl.graph import MISSING, PipelineApp, TimestampFn, claim_store
from eokafka.dsl.pipe import Pipe
from eokafka.dsl.windowed import EmitMode, Late, WindowOperator, check_emit, window_retention
from eokafka.serdes import Serde
from eokafka.state import stream_time_store
from eokafka.windows import Aggregator, Windows

Update = Callable[[Any, Any, Any], Any]  # (key, value, old aggregate or MISSING) -> new
Source = Callable[[str], Pipe]  # an aggregation's name -> the pipe its grouping flows from


def grouped(stream: Pipe, name: str, key_serde: Serde | None, value_serde: Serde | None) -> Pipe:
    """Where a grouping's aggregations go: its stream, or a repartition topic named ``name``
    if the key changed or several processors feed it (so each key has one task)."""
    if stream.rekeyed or stream.more:
        return stream.repartition(name, key_serde, value_serde, True)
    return stream


def counting() -> Update:
    return lambda key, value, old: (0 if old is MISSING else old) + 1


def reducing(reducer: Callable[[Any, Any], Any]) -> Update:
    return lambda key, value, old: value if old is MISSING else reducer(old, value)


def aggregating(
    initializer: Callable[[], Any], aggregator: Callable[[Any, Any, Any], Any]
) -> Update:
    return lambda key, value, old: aggregator(key, value, initializer() if old is MISSING else old)


def aggregate(app: PipelineApp, source: Source, label: str, name: str, update: Update) -> Pipe:
    """``update`` into store ``name`` on the processor of ``source(name)``, the grouping's."""
    claim_store(app, name, label)
    stream = source(name)
    root = stream.root
    root.add_store(name)
    node = root.add(stream.node, f"{label}({name})", op.aggregating(label, name, update))
    return Pipe(root, node)


class Windowing:
    """What ``window()`` was declared with, checked; :meth:`aggregate` declares each
    aggregation over it."""

    def __init__(
        self,
        windows: Windows,
        timestamp: TimestampFn | None,
        late: Late,
        retention_ms: int | None,
        close_on_idle_ms: int | None,
    ) -> None:
        self.retention_ms = window_retention(windows, late, retention_ms)
        self.close_on_idle_ms = close_on_idle_ms
        self.windows = windows
        self.timestamp = timestamp
        self.late = late

    def aggregate(
        self,
        app: PipelineApp,
        source: Source,
        label: str,
        name: str,
        emit: EmitMode,
        agg: Aggregator,
    ) -> Pipe:
        """The windowed aggregation ``name`` on the processor of ``source(name)``."""
        check_emit(label, name, emit)
        claim_store(app, name, f"windowed {label}")
        claim_store(app, stream_time_store(name), f"windowed {label}({name!r}) stream time")
        stream = source(name)
        root = stream.root
        root.add_store(name)
        root.add_store(stream_time_store(name))
        app.topology.add_window_store(name, self.retention_ms, windows=self.windows)
        if self.late == "dead-letter":
            app.topology.add_dead_letters()
        idle = self.close_on_idle_ms
        operator = WindowOperator(
            root, name, self.windows, agg, emit == "final", self.late, self.timestamp, idle
        )
        closing = ""
        if idle is not None:
            app.topology.add_idle_window(name, operator)
            closing = f", close on idle {idle} ms"
        node = root.add(stream.node, f"window {label}({name}, {emit}{closing})", operator.wrap)
        return Pipe(root, node)
