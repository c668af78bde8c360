"""Versioned tables and the time-aligned (as-of) stream-table join.

A versioned table (``app.table(..., history_ms=H)``) keeps, per key, its versions
``[[valid from, value or None], ...]`` in time order (None: deleted from then on). Its time
(the largest timestamp it has seen on the partition) lives beside it in
``<table>-stream-time``. An update older than ``time - H`` is dropped and counted as late;
one within the history goes into its place (and flows on only if it is the newest). A key
keeps the versions of the last ``H`` ms and the one valid at ``time - H``.

A stream record at ``t`` joins the version valid at ``t`` (as-of), not the latest one. It
waits, in the store ``<name>-waiting``, while the table's time on the partition is behind
``t`` and the stream's own time is less than ``max_wait_ms`` past ``t``; it is joined when
the table catches up (the table's processor sends the result) or when the stream moves on
that far (with what is known then). ``max_wait_ms=0`` (the default) joins at once, with the
table as it is. With ``release_on_idle_ms=I`` a partition that had no record for ``I`` ms of
wall clock lets its stream time move on by the wall-clock time since its last record, so
waiting records are released ``max_wait_ms`` later even when no new record comes (as a
window closes on idle, ``eokafka.dsl.windowed``: latency bought with determinism, still
exactly once). A record older than the table's history (``t < table time - H``) joins
nothing (an inner join drops it, counted as late; a left join gives None). Both waiting and
joining happen inside the transaction of the record that triggers them, so a replay after a
crash gives the same results once. The waiting is in event time: results do not depend on
which topic was read first as long as the table's time passes a record within
``max_wait_ms`` of stream time.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable
from typing import Any

from eokafka.dsl.graph import MISSING, Emit, Root, Wrap, check_timestamp
from eokafka.serdes import Serde
from eokafka.state import StreamTimeStore, WindowStore, stream_time_store
from eokafka.windows import KeyState, decode_state, encode_state

log = logging.getLogger("eokafka.joins")
Joiner = Callable[[Any, Any], Any]


def _event_time(root: Root, what: str) -> int:
    ts = root.ts
    return check_timestamp(root.record.timestamp, what) if ts is None else ts


def as_of(versions: list[list[Any]] | None, ts: int) -> Any:
    """The value valid at ``ts`` (None if deleted then), or MISSING if none was yet."""
    if not versions:
        return MISSING
    at = bisect.bisect_right([v[0] for v in versions], ts)
    return MISSING if at == 0 else versions[at - 1][1]


def storing_versions(topic: str, store: str, history_ms: int, root: Root) -> Wrap:
    """``app.table(..., history_ms=)``: each record becomes a version of its key."""
    time_store = stream_time_store(store)
    dropped = f"table({topic}): None key"
    what = f"the record timestamp of table {store!r}"

    def wrap(nxt: Emit) -> Emit:
        def emit(key: Any, value: Any, ctx: Any) -> None:
            if key is None:
                ctx.drop(dropped)
                return
            ts = _event_time(root, what)
            clock: StreamTimeStore = ctx.store(time_store)
            before = clock.stream_time()
            now = ts if before is None or ts > before else before
            if ts < now - history_ms:
                ctx.late_record(store, "dropped")
                record = root.record
                log.warning(
                    "dropped record %s[%s]@%s: time %d is older than the history of table %r "
                    "(%d ms before its time %d)",
                    record.topic, record.partition, record.offset, ts, store, history_ms, now,
                )  # fmt: skip
                return
            if now != before:
                clock.set_stream_time(now)
            table = ctx.store(store)
            versions: list[list[Any]] = table.get(key) or []
            at = bisect.bisect_right([v[0] for v in versions], ts)
            if at and versions[at - 1][0] == ts:
                versions[at - 1][1] = value  # the same time: the later record wins
            else:
                versions.insert(at, [ts, value])
            newest = at >= len(versions) - 1
            horizon = bisect.bisect_right([v[0] for v in versions], now - history_ms)
            if horizon > 1:  # keep the version valid at the horizon, drop older ones
                del versions[: horizon - 1]
            if len(versions) == 1 and versions[0][1] is None and versions[0][0] <= now - history_ms:
                versions = []
            table.put(key, versions or None)
            if newest:
                nxt(key, value, ctx)

        return emit

    return wrap


class AsOfJoin:
    """One time-aligned join of a stream with a versioned table: the stream side's operator
    and, when records may wait, the table side's that sends those the table caught up with."""

    def __init__(
        self,
        name: str | None,
        table: str,
        history_ms: int,
        joiner: Joiner,
        left: bool,
        max_wait_ms: int,
        key_serde: Serde,
        release_on_idle_ms: int | None = None,
    ) -> None:
        self.table = table
        self.table_time = stream_time_store(table)
        self.history_ms = history_ms
        self.joiner = joiner
        self.left = left
        self.max_wait_ms = max_wait_ms
        self.key_serde = key_serde
        self.waiting = f"{name}-waiting" if max_wait_ms else None
        self.close_on_idle_ms = release_on_idle_ms  # read by the wall clock (IdleCloser)
        idle = "" if release_on_idle_ms is None else f", release on idle {release_on_idle_ms} ms"
        self.label = f"{'left_join' if left else 'join'}({table}, as of{idle})"
        self._stream_sides: list[tuple[Root, list[Emit]]] = []

    @property
    def stores(self) -> tuple[str, ...]:
        if self.waiting is None:
            return (self.table, self.table_time)
        return (self.table, self.table_time, self.waiting, stream_time_store(self.waiting))

    def _join(self, root: Root, nxt: Emit, key: Any, value: Any, ts: int, ctx: Any) -> None:
        """Join one record as of ``ts``; the result carries ``ts``."""
        table_time = ctx.store(self.table_time).stream_time()
        found: Any = MISSING
        if table_time is None or ts >= table_time - self.history_ms:
            found = as_of(ctx.store(self.table).get(key), ts)
        elif not self.left:
            ctx.late_record(self.table, "older than the history")
        if found is MISSING or found is None:
            if not self.left:
                return
            found = None
        saved = root.ts
        root.ts = ts
        try:
            nxt(key, self.joiner(value, found), ctx)
        finally:
            root.ts = saved

    def _release(self, root: Root, nxt: Emit, ctx: Any, bound: int) -> None:
        """Join the waiting records at or before ``bound``, in time order per key."""
        assert self.waiting is not None
        waiting: WindowStore = ctx.store(self.waiting)
        serde = waiting.aggregate_serde
        for kb, _, payload in waiting.due(bound):
            state = decode_state(payload, serde.deserialize)
            key = self.key_serde.deserialize(kb)
            ready = sorted((e for e in state.entries if e[0] <= bound), key=lambda e: e[0])
            state.entries = [e for e in state.entries if e[0] > bound]
            close = min(e[0] for e in state.entries) if state.entries else None
            waiting.put_entry(kb, close, encode_state(state, serde.serialize))
            for ts, _, value in ready:
                self._join(root, nxt, key, value, ts, ctx)

    def _bound(self, ctx: Any, stream_time: int | None) -> int | None:
        """Records at or before this time may join: the table is there, or waited enough."""
        table_time = ctx.store(self.table_time).stream_time()
        late = None if stream_time is None else stream_time - self.max_wait_ms
        times = [t for t in (table_time, late) if t is not None]
        return max(times) if times else None

    def close_idle(self, ctx: Any, active_ms: int, now_ms: int) -> int | None:
        """The partition had no record since wall-clock ``active_ms`` and ``now_ms`` is
        ``release_on_idle_ms`` past it: the stream's time moves on by the wall-clock time since
        then and the records it leaves ``max_wait_ms`` behind join with what is known.
        Returns the new stream time (None: nothing moved)."""
        idle = self.close_on_idle_ms
        if idle is None or self.waiting is None or now_ms - active_ms < idle:
            return None
        clock: StreamTimeStore = ctx.store(stream_time_store(self.waiting))
        target = clock.idle_target(active_ms, now_ms)
        if target is None:
            return None
        root, compiled = self._stream_sides[0]
        root.compiled()
        clock.set_stream_time(target)
        bound = self._bound(ctx, target)
        if bound is not None:
            saved = root.record
            root.record = None
            try:
                self._release(root, compiled[0], ctx, bound)
            finally:
                root.record = saved
        return target

    def stream_side(self, root: Root) -> Wrap:
        what = f"the record timestamp of the join with table {self.table!r}"
        compiled: list[Emit] = []
        self._stream_sides.append((root, compiled))

        def wrap(nxt: Emit) -> Emit:
            compiled[:] = [nxt]
            def emit(key: Any, value: Any, ctx: Any) -> None:
                if key is None:
                    if self.left:
                        nxt(key, self.joiner(value, None), ctx)
                    return
                ts = _event_time(root, what)
                if self.waiting is None:
                    self._join(root, nxt, key, value, ts, ctx)
                    return
                clock: StreamTimeStore = ctx.store(stream_time_store(self.waiting))
                before = clock.stream_time()
                now = ts if before is None or ts > before else before
                if now != before:
                    clock.set_stream_time(now)
                bound = self._bound(ctx, now)
                if bound is not None and ts <= bound:
                    self._join(root, nxt, key, value, ts, ctx)
                else:
                    self._wait(ctx, key, value, ts)
                if bound is not None and now != before:
                    self._release(root, nxt, ctx, bound)

            return emit

        return wrap

    def _wait(self, ctx: Any, key: Any, value: Any, ts: int) -> None:
        assert self.waiting is not None
        waiting: WindowStore = ctx.store(self.waiting)
        serde = waiting.aggregate_serde
        kb = self.key_serde.serialize(key)
        if kb is None:
            raise ValueError(f"the join with table {self.table!r}: the key serialized to None")
        found = waiting.state(kb, lambda data: decode_state(data, serde.deserialize))
        state = KeyState() if found is None else found[1]
        state.entries.append([ts, 0, value])
        close = ts if found is None else min(found[0], ts)
        was = None if found is None else found[0]
        waiting.put_entry(kb, close, encode_state(state, serde.serialize), was)

    def table_side(self, root: Root) -> Wrap:
        """Under the table's store operator: after each update, send what stopped waiting."""
        assert self.waiting is not None
        stream_clock = stream_time_store(self.waiting)

        def wrap(nxt: Emit) -> Emit:
            def emit(key: Any, value: Any, ctx: Any) -> None:
                bound = self._bound(ctx, ctx.store(stream_clock).stream_time())
                if bound is not None:
                    self._release(root, nxt, ctx, bound)

            return emit

        return wrap
