"""The per-record work of a windowed stream-stream join (``stream.join(other, fn,
window=JoinWindows(...))``, declared in ``joins.py``); the window's rules are in
``eokafka.windows.join``.

Each side buffers its records in a window store of its own (``<name>-left``,
``<name>-right``): per key, the records not yet expired as ``[time, matched, value]``, and
the time at which the first of them expires, so the store's close index finds expired
records without a scan. The two sides share one stream time (the store beside the left
buffer, ``<name>-left-stream-time``). A record, inside the open transaction: advances the
stream time; is dropped if late; joins the other side's buffered records of its key in its
window (marking them matched where an unmatched result could follow); goes into its own
buffer; then both buffers expire what stream time passed, sending unmatched results of a
left or outer join. Buffers, stream time and outputs change in one transaction, so a replay
after a crash joins and expires the same records once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from eokafka.dsl.graph import Emit, PipelineApp, Root, check_timestamp, claim_store
from eokafka.dsl.windowed import DEFAULT_RETENTION_MARGIN_MS
from eokafka.errors import TopologyError
from eokafka.serdes import Bytes, Serde
from eokafka.state import StreamTimeStore, WindowStore, stream_time_store
from eokafka.windows import JoinWindows, KeyState, decode_state, encode_state

log = logging.getLogger("eokafka.joins")
JoinKind = Literal["inner", "left", "outer"]
Joiner = Callable[[Any, Any], Any]
METHODS: dict[JoinKind, str] = {"inner": "join", "left": "left_join", "outer": "outer_join"}


class StreamJoin:
    """One windowed join: its stores, window and joiner; :meth:`side` builds each side."""

    def __init__(self, name: str, window: JoinWindows, joiner: Joiner, kind: JoinKind) -> None:
        self.name = name
        self.key_serde: Serde = Bytes()  # the left side's: one key, one byte string in both
        self.window = window
        self.joiner = joiner
        self.kind = kind
        self.method = METHODS[kind]
        self.stores = (f"{name}-left", f"{name}-right")
        self.time_store = stream_time_store(self.stores[0])

    @classmethod
    def declare(
        cls,
        app: PipelineApp,
        name: str | None,
        window: JoinWindows | None,
        joiner: Joiner,
        kind: JoinKind,
    ) -> StreamJoin:
        """Check what a join of two streams is declared with; claim its stores' names."""
        method = METHODS[kind]
        if not isinstance(window, JoinWindows):
            raise TopologyError(
                f"{method} of two streams needs window=JoinWindows(before_ms=, after_ms=, "
                f"grace_ms=): how far apart two records of a key may be to join, and how long "
                f"late records may still come (got window={window!r})"
            )
        if name is None:
            raise TopologyError(
                f"{method} of two streams needs name=: it names the join's stores "
                "(<name>-left, <name>-right) and their changelog topics"
            )
        join = cls(name, window, joiner, kind)
        for store in join.all_stores:
            claim_store(app, store, f"{method}({name!r})")
        return join

    def add_stores(self, roots: list[Root]) -> None:
        """Both sides' processors use the two buffers and the stream time (which also makes
        their topics one co-partitioned group); the buffers are window stores."""
        for root in roots:
            for store in self.all_stores:
                root.add_store(store)
        topology = roots[0].app.topology
        retention = self.window.expire_after_ms + DEFAULT_RETENTION_MARGIN_MS
        topology.add_window_store(self.stores[0], retention)
        topology.add_window_store(self.stores[1], retention, clock=False)

    def label(self, side: str) -> str:
        """The operator as ``describe`` shows it."""
        return f"{self.method}({self.name}, {side})"

    @property
    def all_stores(self) -> tuple[str, str, str]:
        return (*self.stores, self.time_store)

    def emits_unmatched(self, left: bool) -> bool:
        return self.kind == "outer" or (left and self.kind == "left")

    def side(self, root: Root, left: bool) -> Callable[[Emit], Emit]:
        """The operator of one side, under the processor ``root`` of that side's topic."""
        window, joiner, name = self.window, self.joiner, self.name
        mine_name, theirs_name = self.stores if left else self.stores[::-1]
        time_name = self.time_store
        reach = window.reach_ms(left) + window.grace_ms
        before, after = window.before_ms, window.after
        lookback, lookahead = (before, after) if left else (after, before)
        expire = window.expire_after_ms + 1  # a record expires once stream time reaches this
        track_mine, track_theirs = self.emits_unmatched(left), self.emits_unmatched(not left)
        unmatched = {mine_name: track_mine, theirs_name: track_theirs}
        serialize_key, deserialize_key = self.key_serde.serialize, self.key_serde.deserialize
        dropped = f"{name}: None key or value"
        what = f"the record timestamp of join {name!r}"

        def wrap(nxt: Emit) -> Emit:
            def send(key: Any, value: Any, ts: int, ctx: Any) -> None:
                saved = root.ts
                root.ts = ts  # sinks and windows downstream take the result's time
                try:
                    nxt(key, value, ctx)
                finally:
                    root.ts = saved

            def expire_due(store: WindowStore, now: int, ctx: Any) -> None:
                serde = store.aggregate_serde
                for kb, _, payload in store.due(now):
                    state = decode_state(payload, serde.deserialize)
                    kept = [e for e in state.entries if e[0] + expire > now]
                    if unmatched[store.name]:
                        gone = [e for e in state.entries if e[0] + expire <= now and not e[1]]
                        key = deserialize_key(kb) if gone else None
                        for ts, _, value in gone:
                            pair = (value, None) if store.name == self.stores[0] else (None, value)
                            send(key, joiner(*pair), ts, ctx)
                    state.entries = kept
                    close = min(e[0] for e in kept) + expire if kept else None
                    store.put_entry(kb, close, encode_state(state, serde.serialize))

            def emit(key: Any, value: Any, ctx: Any) -> None:
                if key is None or value is None:
                    ctx.drop(dropped)
                    return
                ts = root.ts
                if ts is None:
                    ts = check_timestamp(root.record.timestamp, what)
                clock: StreamTimeStore = ctx.store(time_name)
                before = clock.stream_time()
                now = ts if before is None or ts > before else before
                if ts + reach < now:
                    on_late(ctx, ts, now)
                    return
                if now != before:
                    clock.set_stream_time(now)
                mine: WindowStore = ctx.store(mine_name)
                theirs: WindowStore = ctx.store(theirs_name)
                kb = serialize_key(key)
                if kb is None:
                    raise ValueError(f"join {name!r}: the key serialized to None")
                matched = False
                serde = theirs.aggregate_serde
                found = theirs.state(kb, lambda data: decode_state(data, serde.deserialize))
                if found is not None:
                    changed = False
                    low, high = ts - lookback, ts + lookahead
                    for entry in found[1].entries:
                        other_ts = entry[0]
                        if low <= other_ts <= high:
                            matched = True
                            if track_theirs and not entry[1]:
                                entry[1] = 1
                                changed = True
                            out = joiner(value, entry[2]) if left else joiner(entry[2], value)
                            send(key, out, ts if ts > other_ts else other_ts, ctx)
                    if changed:
                        theirs.put_entry(
                            kb, found[0], encode_state(found[1], serde.serialize), found[0]
                        )
                serde = mine.aggregate_serde
                own = mine.state(kb, lambda data: decode_state(data, serde.deserialize))
                state = KeyState() if own is None else own[1]
                state.entries.append([ts, 1 if matched and track_mine else 0, value])
                close = ts + expire if own is None else min(own[0], ts + expire)
                mine.put_entry(
                    kb, close, encode_state(state, serde.serialize), None if own is None else own[0]
                )
                if now != before:
                    expire_due(ctx.store(self.stores[0]), now, ctx)
                    expire_due(ctx.store(self.stores[1]), now, ctx)

            return emit

        def on_late(ctx: Any, ts: int, stream_time: int) -> None:
            record = root.record
            ctx.late_record(name, "dropped")
            log.warning(
                "dropped record %s[%s]@%s: late for join %r: time %d is past its window's "
                "close at stream time %d (%r)",
                record.topic,
                record.partition,
                record.offset,
                name,
                ts,
                stream_time,
                window,
            )

        return wrap
