"""Sliding windows: every distinct set of a key's records at most a size apart."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eokafka.windows.aggregations import Aggregator
from eokafka.windows.definition import Change, Closed, RecordBound, check_ms
from eokafka.windows.state import KeyState


class Sliding(RecordBound):
    """Every distinct set of a key's records at most ``size_ms`` apart, as Kafka Streams does.

    The windows are ``[t - size, t]`` for each record timestamp t (``[0, size]`` for t below
    ``size``: no window starts before the epoch), and ``[t + 1, t + 1 + size]`` for each t
    with a record after it in that span. A window closes when stream time passes
    ``end + grace_ms``; a record is late when it is more than ``grace_ms`` behind stream time.
    The key's records of the last ``size + grace`` ms are kept and folded per window, so an
    update costs O(records in reach) per window it touches.
    """

    def __init__(self, size_ms: int, grace_ms: int = 0) -> None:
        self.size_ms = check_ms("size_ms", size_ms, 0)
        self.grace_ms = check_ms("grace_ms", grace_ms, 0)

    def __repr__(self) -> str:
        return f"Sliding(size_ms={self.size_ms}, grace_ms={self.grace_ms})"

    @property
    def horizon_ms(self) -> int:
        return self.size_ms + self.grace_ms + 1

    def windows(self, timestamps: Iterable[int]) -> list[tuple[int, int]]:
        """Every window of these record timestamps, in order of end then start."""
        times = sorted(set(timestamps))
        size = self.size_ms
        found = {(t - size, t) if t >= size else (0, size) for t in times}
        for i, t in enumerate(times[:-1]):
            if times[i + 1] <= t + 1 + size:  # a later record is in the right window
                found.add((t + 1, t + 1 + size))
        return sorted(found, key=lambda w: (w[1], w[0]))

    def _aggregate(self, state: KeyState, key: Any, start: int, end: int, agg: Aggregator) -> Any:
        return agg.fold(key, (e[2] for e in state.entries if start <= e[0] <= end))

    def add(
        self, state: KeyState, key: Any, ts: int, value: Any, agg: Aggregator, changes: bool
    ) -> list[Change]:
        state.entries.append([ts, 0, value])
        if not changes:
            return []
        return [
            (s, e, self._aggregate(state, key, s, e, agg))
            for s, e in self.windows(e[0] for e in state.entries)
            if s <= ts <= e or s == ts + 1  # holding the record, or its new right window
        ]

    def close(
        self, state: KeyState, key: Any, stream_time: int, agg: Aggregator
    ) -> list[Closed] | None:
        cutoff = self.closed_through(stream_time)
        if cutoff <= state.mark:
            return None
        done = [
            (s, e, self._aggregate(state, key, s, e, agg))
            for s, e in self.windows(e[0] for e in state.entries)
            if state.mark < e <= cutoff
        ]
        state.mark = cutoff
        # A window still open ends after cutoff, so it starts after cutoff - size - 1.
        keep_from = cutoff - self.size_ms
        state.entries = [e for e in state.entries if e[0] >= keep_from]
        return done

    def closed_through(self, stream_time: int) -> int:
        return stream_time - self.grace_ms - 1  # a window includes its end

    def next_close(self, state: KeyState) -> int | None:
        """The next window's close; without one, when the records are out of every future
        window's reach (a record at t is in none ending after t + 1 + size)."""
        if not state.entries:
            return None
        ends = [e for _, e in self.windows(e[0] for e in state.entries) if e > state.mark]
        if not ends:
            ends = [max(e[0] for e in state.entries) + self.size_ms + 1]
        return min(ends) + self.grace_ms + 1
