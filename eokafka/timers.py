"""Timers of the processor API: recurring schedules, one-shots and per-key timers.

A processor declared with ``init=`` or ``on_timer=`` (``@app.processor``) gets a store of its
own, ``<processor>-timers`` (``eokafka.state.timers``), changelogged like every store, that
keeps its stream time, its per-key timers and the one-shots that fired. The processor's
``init(ctx)`` runs once per task whenever the task opens (first record or first wall-clock
check): there ``ctx.schedule(...)`` and ``ctx.schedule_at(...)`` register what fires; in the
processor and in timer callbacks ``ctx.timers.set(key, at_ms)`` / ``cancel(key)`` keep a
timer per key, which calls ``on_timer(timer, ctx)``.

Stream-time timers (docs/architecture.md invariant 13): stream time is the largest record
timestamp the processor has seen on its task. After each record, the timers it passed fire
in order of time, in the record's transaction, and their outputs are that record's outputs
(all-or-nothing with it; a failing callback fails the record, as the poison policy says).
Replays see the same records in the same order, so they fire the same timers the same way.
A recurring stream-time schedule fires when stream time crosses a multiple of its interval,
once per record however many multiples it crossed, at the last one.

Wall-clock timers fire from the worker loop, in the open transaction, for running tasks;
a failing callback stops the worker (there is no input record to set aside). They are not
replay-deterministic: when they fire depends on when the worker runs, and a recurring
wall-clock firing aborted with its transaction is not repeated. One-shots and per-key timers
of either kind are kept in the store, so each fires once, exactly once, across restarts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from eokafka.context import ProcessorContext, Timer, TimerFn
from eokafka.errors import EokafkaError, TopologyError
from eokafka.serdes import Serde
from eokafka.state import TimerStore

__all__ = ["KINDS", "InitFn", "ProcessorTimers", "Timer", "TimerError", "TimerFn", "TimerScope"]

Kind = Literal["stream-time", "wall-clock"]
KINDS: tuple[str, ...] = get_args(Kind)
InitFn = Callable[[ProcessorContext], None]


class TimerError(EokafkaError):
    """A wall-clock timer callback raised: no input record to set aside, the worker stops."""


@dataclass
class _Schedule:
    name: str
    fn: TimerFn
    kind: str
    interval: int = 0  # recurring; 0: a one-shot at ``at``
    at: int = 0
    next_wall: int | None = None  # a recurring wall-clock schedule's next firing


@dataclass
class Registered:
    """What ``init`` registered on one task (kept on its timer store instance)."""

    schedules: list[_Schedule] = field(default_factory=list)


def _registered(store: TimerStore) -> Registered:
    """What init registered on the task of ``store`` (set before init runs)."""
    registered = store.registered
    assert isinstance(registered, Registered), "init has not run on this timer store"
    return registered


def _check_kind(what: str, kind: object) -> None:
    if kind not in KINDS:
        raise TopologyError(f"{what}: kind must be one of {KINDS}, not {kind!r}")


def _check_time(what: str, name: str, ms: object, positive: bool) -> None:
    if type(ms) is not int or ms < (1 if positive else 0):
        kind = "a positive" if positive else "a non-negative"
        raise TopologyError(f"{what}: {name} must be {kind} int (ms), not {ms!r}")


class TimerScope:
    """``ctx.timers`` and what ``ctx.schedule`` / ``ctx.schedule_at`` reach, for one task."""

    def __init__(self, timers: ProcessorTimers, store: TimerStore, in_init: bool) -> None:
        self._timers = timers
        self._store = store
        self._in_init = in_init

    def _registering(self, call: str) -> Registered:
        if not self._in_init:
            raise TopologyError(
                f"{call}: schedules are registered once per task, in the processor's init "
                f"function: @app.processor(..., init=setup) with setup(ctx) calling {call} "
                f"(processor {self._timers.processor!r}); per key, use ctx.timers.set(key, at)"
            )
        return _registered(self._store)

    def schedule(self, interval_ms: int, fn: TimerFn, kind: str = "stream-time") -> None:
        call = "ctx.schedule(...)"
        registered = self._registering(call)
        _check_time(call, "interval_ms", interval_ms, positive=True)
        _check_kind(call, kind)
        self._add(registered, _Schedule(_name(fn, call), fn, kind, interval=interval_ms))

    def schedule_at(
        self, at_ms: int, fn: TimerFn, kind: str = "stream-time", name: str | None = None
    ) -> None:
        call = "ctx.schedule_at(...)"
        registered = self._registering(call)
        _check_time(call, "at_ms", at_ms, positive=False)
        _check_kind(call, kind)
        self._add(registered, _Schedule(name or _name(fn, call), fn, kind, at=at_ms))

    def _add(self, registered: Registered, schedule: _Schedule) -> None:
        """A one-shot's name marks it fired in the store: two of one name would be one."""
        once = schedule.interval == 0
        if once and any(s.name == schedule.name and not s.interval for s in registered.schedules):
            raise TopologyError(
                f"processor {self._timers.processor!r}: a one-shot named {schedule.name!r} is "
                "registered twice; give schedule_at(..., name=...) distinct names"
            )
        registered.schedules.append(schedule)

    # -- per-key timers --------------------------------------------------------------------

    def _key(self, call: str, key: Any) -> bytes:
        if self._timers.on_timer is None:
            raise TopologyError(
                f"{call}: processor {self._timers.processor!r} has no on_timer callback; "
                "declare it with @app.processor(..., on_timer=fn)"
            )
        data = self._timers.key_serde.serialize(key)
        if data is None:
            raise TopologyError(f"{call}: a timer's key can't be None")
        return data

    def set(self, key: Any, at_ms: int, kind: str = "stream-time") -> None:
        """Fire ``on_timer`` for ``key`` when ``kind`` time reaches ``at_ms`` (replaces the
        key's timer, if it has one)."""
        call = "ctx.timers.set(...)"
        _check_time(call, "at_ms", at_ms, positive=False)
        _check_kind(call, kind)
        self._store.set_timer(self._key(call, key), kind, at_ms)

    def cancel(self, key: Any) -> None:
        self._store.cancel_timer(self._key("ctx.timers.cancel(...)", key))

    def get(self, key: Any) -> Timer | None:
        found = self._store.timer(self._key("ctx.timers.get(...)", key))
        return None if found is None else Timer(key, found[1], found[0])


def _name(fn: object, call: str) -> str:
    if not callable(fn):
        raise TopologyError(f"{call}: fn must be callable fn(timer, ctx), not {fn!r}")
    return str(getattr(fn, "__qualname__", None) or repr(fn))


Due = tuple[int, int, bytes, _Schedule | None]  # time, order, tie-break, schedule (None: key)


class ProcessorTimers:
    """The timers of one processor: wraps its function and fires what is due."""

    def __init__(
        self,
        processor: str,
        store_name: str,
        init: InitFn | None,
        on_timer: TimerFn | None,
        key_serde: Serde,
    ) -> None:
        if init is not None and not callable(init):
            raise TopologyError(f"processor {processor!r}: init must be callable init(ctx)")
        if on_timer is not None and not callable(on_timer):
            raise TopologyError(
                f"processor {processor!r}: on_timer must be callable on_timer(timer, ctx)"
            )
        self.processor = processor
        self.store_name = store_name
        self.init = init
        self.on_timer = on_timer
        self.key_serde = key_serde

    def describe(self) -> str:
        """For ``eokafka describe``: which callbacks, and the store that keeps the timers."""
        parts = [
            f"init={getattr(self.init, '__name__', self.init)}" if self.init else "",
            f"on_timer={getattr(self.on_timer, '__name__', self.on_timer)}"
            if self.on_timer
            else "",
        ]
        return f"timers ({', '.join(p for p in parts if p)}) kept in store {self.store_name}"

    def store(self, ctx: ProcessorContext) -> TimerStore:
        store = ctx.store(self.store_name)
        assert isinstance(store, TimerStore)
        if store.registered is None:
            store.registered = Registered()
            if self.init is not None:
                try:
                    with ctx.timer_scope(TimerScope(self, store, in_init=True)):
                        self.init(ctx)
                except BaseException:
                    store.registered = None  # runs again, whole, next time
                    raise
        return store

    def wrap(self, fn: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        """The processor, then the stream-time timers its record's timestamp passed."""

        def process(record: Any, ctx: ProcessorContext) -> None:
            store = self.store(ctx)
            with ctx.timer_scope(TimerScope(self, store, in_init=False)):
                fn(record, ctx)
            ts = record.timestamp
            before = store.stream_time()
            now = before
            if type(ts) is int and ts >= 0 and (before is None or ts > before):
                store.set_stream_time(ts)
                now = ts
            if now is not None:
                self._fire(ctx, store, self._due(store, "stream-time", before, now))

        return process

    def wall_due(self, store: TimerStore, now_ms: int) -> bool:
        """Whether a wall-clock check at ``now_ms`` has anything to do (cheap)."""
        if store.registered is None:
            return True  # init has not run on this task yet
        for s in _registered(store).schedules:
            if s.kind != "wall-clock":
                continue
            if s.interval:
                if s.next_wall is None or s.next_wall <= now_ms:
                    return True
            elif s.at <= now_ms and store.fired_once(s.name) != s.at:
                return True
        first = store.next_due("wall-clock")
        return first is not None and first <= now_ms

    def fire_wall_clock(self, ctx: ProcessorContext, now_ms: int) -> int:
        """Fire the wall-clock timers due at ``now_ms`` (ctx bound to the task); how many."""
        try:
            store = self.store(ctx)
            due = self._due(store, "wall-clock", None, now_ms)
            self._fire(ctx, store, due)
        except EokafkaError:
            ctx.pending.clear()
            raise
        except Exception as exc:
            ctx.pending.clear()
            raise TimerError(
                f"processor {self.processor!r}, partition {ctx.partition}: a wall-clock timer "
                f"callback raised {type(exc).__name__}: {exc}"
            ) from exc
        return len(due)

    def _due(self, store: TimerStore, kind: str, before: int | None, now: int) -> list[Due]:
        """What fires as ``kind`` time moves from ``before`` to ``now``, in firing order."""
        due: list[Due] = []
        for s in _registered(store).schedules:
            if s.kind != kind:
                continue
            if s.interval == 0:
                if s.at <= now and store.fired_once(s.name) != s.at:
                    store.mark_fired(s.name, s.at)
                    due.append((s.at, 1, s.name.encode(), s))
            elif kind == "stream-time":
                if before is not None and now // s.interval > before // s.interval:
                    due.append((now - now % s.interval, 0, s.name.encode(), s))
            elif s.next_wall is None:
                s.next_wall = now + s.interval
            elif s.next_wall <= now:
                due.append((s.next_wall, 0, s.name.encode(), s))
                missed = (now - s.next_wall) // s.interval + 1
                s.next_wall += missed * s.interval
        due.extend((at, 2, key, None) for at, key in store.due(kind, now))
        due.sort(key=lambda d: d[:3])
        return due

    def _fire(self, ctx: ProcessorContext, store: TimerStore, due: list[Due]) -> None:
        pending = ctx.pending
        deserialize = self.key_serde.deserialize
        with ctx.timer_scope(TimerScope(self, store, in_init=False)):
            for at, _, tie, schedule in due:
                start = len(pending)
                if schedule is None:
                    found = store.timer(tie)
                    if found is None or found[1] != at:
                        continue  # cancelled or moved by a timer that fired before it
                    store.cancel_timer(tie)
                    assert self.on_timer is not None
                    self.on_timer(Timer(deserialize(tie), at, found[0]), ctx)
                else:
                    schedule.fn(Timer(None, at, schedule.kind, schedule.name), ctx)
                for i in range(start, len(pending)):
                    send = pending[i]
                    if send[4] is None:  # a timer's outputs are stamped with its time
                        pending[i] = (*send[:4], at, send[5])
