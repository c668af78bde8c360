"""How values fold into a window's aggregate, and the aggregations the DSL offers.

Each can merge sessions unless its docstring says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from eokafka.windows.markers import NO_AGGREGATE


@dataclass(frozen=True, slots=True)
class Aggregator:
    """How values fold into an aggregate. ``add(key, value, agg)`` gets NO_AGGREGATE first.

    ``merge(key, a, b)`` joins two session aggregates (None: the aggregation can't do
    sessions); ``result(agg)`` is what gets emitted (e.g. a mean from its sum and count).
    ``pure`` says ``add`` and ``merge`` build new aggregates without changing their inputs,
    and ``result`` hands out nothing that stays in the state (count and mean; not promised
    by user functions, nor by sum/min/max, whose result is the aggregate object itself):
    only then may a decoded window state be reused for the next record of its key.
    """

    add: Callable[[Any, Any, Any], Any]
    merge: Callable[[Any, Any, Any], Any] | None = None
    result: Callable[[Any], Any] = lambda agg: agg
    pure: bool = False

    def fold(self, key: Any, values: Iterable[Any]) -> Any:
        agg = NO_AGGREGATE
        for value in values:
            agg = self.add(key, value, agg)
        return agg


def _identity(value: Any) -> Any:
    return value


def counting() -> Aggregator:
    return Aggregator(
        add=lambda key, value, agg: 1 if agg is NO_AGGREGATE else agg + 1,
        merge=lambda key, a, b: a + b,
        pure=True,
    )


def summing(fn: Callable[[Any], Any] | None = None) -> Aggregator:
    f = fn or _identity
    return Aggregator(
        add=lambda key, value, agg: f(value) if agg is NO_AGGREGATE else agg + f(value),
        merge=lambda key, a, b: a + b,
    )


def picking(pick: Callable[[Any, Any], Any], fn: Callable[[Any], Any] | None = None) -> Aggregator:
    """min or max (``pick``) of ``fn(value)``."""
    f = fn or _identity
    return Aggregator(
        add=lambda key, value, agg: f(value) if agg is NO_AGGREGATE else pick(agg, f(value)),
        merge=lambda key, a, b: pick(a, b),
    )


def averaging(fn: Callable[[Any], Any] | None = None) -> Aggregator:
    """Keeps ``[sum, count]`` (JSON-friendly), emits the mean."""
    f = fn or _identity

    def add(key: Any, value: Any, agg: Any) -> list[Any]:
        total, n = (0, 0) if agg is NO_AGGREGATE else agg
        return [total + f(value), n + 1]

    return Aggregator(
        add=add,
        merge=lambda key, a, b: [a[0] + b[0], a[1] + b[1]],
        result=lambda agg: agg[0] / agg[1],
        pure=True,
    )


def reducing(reducer: Callable[[Any, Any], Any]) -> Aggregator:
    """Sessions merge with ``reducer(a, b)``: right when the reducer is associative."""
    return Aggregator(
        add=lambda key, value, agg: value if agg is NO_AGGREGATE else reducer(agg, value),
        merge=lambda key, a, b: reducer(a, b),
    )


def aggregating(
    initializer: Callable[[], Any],
    aggregator: Callable[[Any, Any, Any], Any],
    merger: Callable[[Any, Any, Any], Any] | None = None,
) -> Aggregator:
    """``aggregator(key, value, agg)`` from ``initializer()``; sessions need ``merger``."""
    return Aggregator(
        add=lambda key, value, agg: aggregator(
            key, value, initializer() if agg is NO_AGGREGATE else agg
        ),
        merge=merger,
    )
