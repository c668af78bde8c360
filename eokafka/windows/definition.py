"""What a window definition answers: which windows a record opens, updates and closes.

Pure functions over one key's state (:class:`~eokafka.windows.state.KeyState`); the kinds
of window are in ``hopping.py`` (hopping, tumbling), ``session.py`` and ``sliding.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from eokafka.windows.aggregations import Aggregator
from eokafka.windows.state import KeyState

Change = tuple[int, int, Any]  # (start, end, aggregate, or REMOVED for a merged-away session)
Closed = tuple[int, int, Any]  # (start, end, final aggregate)


def check_ms(what: str, value: int, minimum: int) -> int:
    """``value``, if it is an int of at least ``minimum`` milliseconds."""
    if type(value) is not int or value < minimum:
        raise ValueError(f"{what} must be an int >= {minimum} (milliseconds), not {value!r}")
    return value


def entry_start(entry: list[Any]) -> int:
    """The sort key of a window entry ``[start, end, aggregate]``."""
    return entry[0]  # type: ignore[no-any-return]


class Windows(ABC):
    """A window definition; subclasses say which windows a record opens, updates and closes."""

    grace_ms: int

    @property
    @abstractmethod
    def horizon_ms(self) -> int:
        """How long (event time) after a key's last update its state may still be needed."""

    @abstractmethod
    def is_late(self, ts: int, stream_time: int) -> bool:
        """True if a window the record at ``ts`` falls in has closed at ``stream_time``."""

    @abstractmethod
    def add(
        self, state: KeyState, key: Any, ts: int, value: Any, agg: Aggregator, changes: bool
    ) -> list[Change]:
        """Apply a non-late record to ``state`` in place; with ``changes``, return the
        windows it changed and their new aggregates (else an empty list)."""

    @abstractmethod
    def close(
        self, state: KeyState, key: Any, stream_time: int, agg: Aggregator
    ) -> list[Closed] | None:
        """Remove the windows closed at ``stream_time`` from ``state`` and return them with
        their final aggregates, in order of end; None if ``state`` did not change."""

    @abstractmethod
    def closed_through(self, stream_time: int) -> int:
        """Windows ending at or before this have closed at ``stream_time``: emitted, and
        no longer kept in the store."""

    @abstractmethod
    def next_close(self, state: KeyState) -> int | None:
        """The stream time at which the key's next window closes; None if none is open."""


class RecordBound(Windows):
    """Windows whose bounds are record times (sessions, sliding): a record is late when it is
    more than ``grace_ms`` behind stream time, so every window it can touch is still open."""

    def is_late(self, ts: int, stream_time: int) -> bool:
        return ts + self.grace_ms < stream_time
