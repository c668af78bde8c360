"""Session windows: a key's records at most a gap apart, merged as records bridge them."""

from __future__ import annotations

import bisect
from typing import Any

from eokafka.windows.aggregations import Aggregator
from eokafka.windows.definition import Change, Closed, RecordBound, check_ms, entry_start
from eokafka.windows.markers import NO_AGGREGATE, REMOVED
from eokafka.windows.state import KeyState


class Session(RecordBound):
    """Records of a key at most ``gap_ms`` apart share a session ``[first, last]``.

    Records exactly ``gap_ms`` apart are in one session, as in Kafka Streams. A record at most
    ``gap_ms`` from several sessions merges them. A session closes when stream time passes
    ``end + gap_ms + grace_ms``: only then can no accepted record join it. A
    record is late when it is more than ``grace_ms`` behind stream time.
    """

    def __init__(self, gap_ms: int, grace_ms: int = 0) -> None:
        self.gap_ms = check_ms("gap_ms", gap_ms, 0)
        self.grace_ms = check_ms("grace_ms", grace_ms, 0)

    def __repr__(self) -> str:
        return f"Session(gap_ms={self.gap_ms}, grace_ms={self.grace_ms})"

    @property
    def horizon_ms(self) -> int:
        return self.gap_ms + self.grace_ms + 1

    def add(
        self, state: KeyState, key: Any, ts: int, value: Any, agg: Aggregator, changes: bool
    ) -> list[Change]:
        if agg.merge is None:
            raise TypeError("session windows need an aggregation that can merge (merger=)")
        low, high = ts - self.gap_ms, ts + self.gap_ms
        merged = [e for e in state.entries if e[0] <= high and e[1] >= low]
        start, end, acc = ts, ts, NO_AGGREGATE
        for s, e, a in merged:  # in start order
            start, end = min(start, s), max(end, e)
            acc = a if acc is NO_AGGREGATE else agg.merge(key, acc, a)
        acc = agg.add(key, value, acc)
        out: list[Change] = []
        if changes:
            out = [(s, e, REMOVED) for s, e, _ in merged if (s, e) != (start, end)]
            out.append((start, end, acc))
        kept = [e for e in state.entries if not (e[0] <= high and e[1] >= low)]
        bisect.insort(kept, [start, end, acc], key=entry_start)
        state.entries = kept
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
        """A session ending before stream time minus gap and grace can't grow any more."""
        return stream_time - self.gap_ms - self.grace_ms - 1

    def next_close(self, state: KeyState) -> int | None:
        if not state.entries:
            return None
        return min(e[1] for e in state.entries) + self.gap_ms + self.grace_ms + 1
