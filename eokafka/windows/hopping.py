"""Hopping windows and tumbling ones (hopping windows that advance by their size).

Windows are ``[start, end)`` with ``end = start + size``, their starts aligned to the epoch;
none starts before the epoch.
"""

from __future__ import annotations

from typing import Any

from eokafka.windows.aggregations import Aggregator
from eokafka.windows.definition import Change, Closed, Windows, check_ms, entry_start
from eokafka.windows.markers import NO_AGGREGATE
from eokafka.windows.state import KeyState


class Hopping(Windows):
    """Windows of ``size_ms`` starting every ``advance_ms``: a record is in size/advance of them.

    A window ``[start, start + size)`` closes when stream time reaches ``end + grace_ms``.
    """

    def __init__(self, size_ms: int, advance_ms: int, grace_ms: int = 0) -> None:
        self.size_ms = check_ms("size_ms", size_ms, 1)
        self.advance_ms = check_ms("advance_ms", advance_ms, 1)
        self.grace_ms = check_ms("grace_ms", grace_ms, 0)
        if advance_ms > size_ms:
            raise ValueError(f"advance_ms ({advance_ms}) must not exceed size_ms ({size_ms})")

    def __repr__(self) -> str:
        return (
            f"Hopping(size_ms={self.size_ms}, advance_ms={self.advance_ms}, "
            f"grace_ms={self.grace_ms})"
        )

    @property
    def horizon_ms(self) -> int:
        return self.size_ms + self.grace_ms

    def _first_start(self, ts: int) -> int:
        """The start of the earliest window holding ``ts``: the lowest aligned start above
        ``ts - size``, and never before the epoch."""
        advance = self.advance_ms
        return max((ts - self.size_ms) // advance * advance + advance, 0)

    def windows_for(self, ts: int) -> list[tuple[int, int]]:
        """The windows holding ``ts``, earliest first."""
        size = self.size_ms
        return [(s, s + size) for s in range(self._first_start(ts), ts + 1, self.advance_ms)]

    def is_late(self, ts: int, stream_time: int) -> bool:
        return self._first_start(ts) + self.size_ms + self.grace_ms <= stream_time

    def add(
        self, state: KeyState, key: Any, ts: int, value: Any, agg: Aggregator, changes: bool
    ) -> list[Change]:
        entries = state.entries
        out: list[Change] = []
        added = False
        for start, end in self.windows_for(ts):
            entry = next((e for e in entries if e[0] == start), None)
            if entry is None:
                entry = [start, end, NO_AGGREGATE]
                entries.append(entry)
                added = True
            entry[2] = agg.add(key, value, entry[2])
            if changes:
                out.append((start, end, entry[2]))
        if added:
            entries.sort(key=entry_start)
        return out

    def close(
        self, state: KeyState, key: Any, stream_time: int, agg: Aggregator
    ) -> list[Closed] | None:
        cutoff = self.closed_through(stream_time)
        done = [(s, e, a) for s, e, a in state.entries if e <= cutoff]
        if not done:
            return None
        state.entries = [entry for entry in state.entries if entry[1] > cutoff]
        return done

    def closed_through(self, stream_time: int) -> int:
        return stream_time - self.grace_ms

    def next_close(self, state: KeyState) -> int | None:
        entries = state.entries
        if not entries:
            return None
        # Windows of one size sorted by start are sorted by end too: the first ends first.
        return entries[0][1] + self.grace_ms  # type: ignore[no-any-return]


class Tumbling(Hopping):
    """Back-to-back windows of ``size_ms``: every record is in exactly one."""

    def __init__(self, size_ms: int, grace_ms: int = 0) -> None:
        super().__init__(size_ms, size_ms, grace_ms)

    def is_late(self, ts: int, stream_time: int) -> bool:
        return ts - ts % self.size_ms + self.size_ms + self.grace_ms <= stream_time

    def add(
        self, state: KeyState, key: Any, ts: int, value: Any, agg: Aggregator, changes: bool
    ) -> list[Change]:
        """Hopping.add with its one window found without building the list of windows."""
        size = self.size_ms
        start = ts - ts % size
        entries = state.entries
        for entry in entries:
            if entry[0] == start:
                break
        else:
            entry = [start, start + size, NO_AGGREGATE]
            entries.append(entry)
            if len(entries) > 1:
                entries.sort(key=entry_start)
        entry[2] = aggregate = agg.add(key, value, entry[2])
        return [(start, start + size, aggregate)] if changes else []

    def __repr__(self) -> str:
        return f"Tumbling(size_ms={self.size_ms}, grace_ms={self.grace_ms})"
