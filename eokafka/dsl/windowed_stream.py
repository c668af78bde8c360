"""A grouped stream cut into event-time windows: its aggregations, each giving a windowed
table (``GroupedStream.window`` in ``stream.py`` makes it, and says how a result becomes a
table, so this module names none of the other fluent classes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from eokafka import windows as w
from eokafka.dsl import grouping
from eokafka.dsl.graph import PipelineApp
from eokafka.dsl.pipe import Pipe
from eokafka.dsl.windowed import EmitMode
from eokafka.errors import TopologyError
from eokafka.windows import Aggregator

T = TypeVar("T")


class WindowedStream(Generic[T]):
    """A grouped stream cut into event-time windows, waiting for its aggregation.

    Every aggregation takes ``name`` (its window store, changelog ``<app id>-<name>-changelog``)
    and ``emit``: ``"update"`` sends (Windowed(key, start, end), aggregate) for every change,
    ``"final"`` sends each window's result once, when stream time passes its close.
    """

    def __init__(
        self,
        windowing: grouping.Windowing,
        app: PipelineApp,
        source: grouping.Source,
        make: Callable[[Pipe, str], T],
    ) -> None:
        self._windowing = windowing
        self._app = app
        self._source = source  # the grouping's repartitioned stream, made at first use
        self._make = make  # the windowed table of a result (stream.py's T)

    # -- aggregations ----------------------------------------------------------------------

    def count(self, *, name: str, emit: EmitMode = "update") -> T:
        """Records per key and window."""
        return self._aggregate("count", name, emit, w.counting())

    def sum(
        self, fn: Callable[[Any], Any] | None = None, *, name: str, emit: EmitMode = "update"
    ) -> T:
        """The sum of ``fn(value)`` (default: the value itself)."""
        return self._aggregate("sum", name, emit, w.summing(fn))

    def min(
        self, fn: Callable[[Any], Any] | None = None, *, name: str, emit: EmitMode = "update"
    ) -> T:
        """The smallest ``fn(value)`` (default: the value itself)."""
        return self._aggregate("min", name, emit, w.picking(min, fn))

    def max(
        self, fn: Callable[[Any], Any] | None = None, *, name: str, emit: EmitMode = "update"
    ) -> T:
        """The largest ``fn(value)`` (default: the value itself)."""
        return self._aggregate("max", name, emit, w.picking(max, fn))

    def mean(
        self, fn: Callable[[Any], Any] | None = None, *, name: str, emit: EmitMode = "update"
    ) -> T:
        """The mean of ``fn(value)``; the store keeps ``[sum, count]``, the output is a float."""
        return self._aggregate("mean", name, emit, w.averaging(fn))

    def reduce(
        self, reducer: Callable[[Any, Any], Any], *, name: str, emit: EmitMode = "update"
    ) -> T:
        """``reducer(aggregate, value)``; a window's first value is its aggregate. Sessions
        merge with ``reducer(a, b)`` too, so it must be associative there."""
        return self._aggregate("reduce", name, emit, w.reducing(reducer))

    def aggregate(
        self,
        initializer: Callable[[], Any],
        aggregator: Callable[[Any, Any, Any], Any],
        *,
        name: str,
        emit: EmitMode = "update",
        merger: Callable[[Any, Any, Any], Any] | None = None,
    ) -> T:
        """``aggregator(key, value, aggregate)`` from ``initializer()`` per window; session
        windows also need ``merger(key, a, b)`` to join two sessions' aggregates."""
        if isinstance(self._windowing.windows, w.Session) and merger is None:
            raise TopologyError(
                f"aggregate({name!r}) over session windows needs merger=(key, a, b) -> aggregate"
            )
        return self._aggregate(
            "aggregate", name, emit, w.aggregating(initializer, aggregator, merger)
        )

    # -- compilation -----------------------------------------------------------------------

    def _aggregate(self, label: str, name: str, emit: EmitMode, agg: Aggregator) -> T:
        pipe = self._windowing.aggregate(self._app, self._source, label, name, emit, agg)
        return self._make(pipe, name)
