"""Timers of the processor API (eokafka/timers.py) through the test driver: stream time by
the records piped, wall clock by ``advance_time``; crashes and aborts in between."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import eokafka
from eokafka import serdes
from eokafka.errors import TopologyError
from eokafka.testing import TestDriver
from eokafka.timers import Timer, TimerError
from tests.timers_reference import fired

S, J = serdes.String(), serdes.Json()
TIMEOUT = 1_000


def _alerts_app(backend: str = "memory") -> eokafka.App:
    """An order (value "order") not paid (value "payment", same key) within TIMEOUT ms of
    stream time raises an alert; a tick goes out
    every 500 ms of stream time, and once when stream time reaches 2000."""
    app = eokafka.App("timer-alerts")
    app.store("orders-timers", backend=backend)  # type: ignore[arg-type]

    def tick(timer: Timer, ctx: eokafka.ProcessorContext) -> None:
        ctx.send("ticks", timer.name, str(timer.time))

    def setup(ctx: eokafka.ProcessorContext) -> None:
        ctx.schedule(500, tick)
        ctx.schedule_at(2_000, tick, name="at-2000")

    def expired(timer: Timer, ctx: eokafka.ProcessorContext) -> None:
        ctx.send("alerts", timer.key, str(timer.time))

    @app.processor("orders", key_serde=S, value_serde=S, init=setup, on_timer=expired)
    def orders(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
        if record.value == "order":
            ctx.timers.set(record.key, record.timestamp + TIMEOUT)
        else:
            ctx.timers.cancel(record.key)

    return app


def _events(seed: int, n: int = 120) -> list[tuple[str, str, int]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        key = f"o{rnd.randrange(15)}"
        ts = i * 40 + rnd.randrange(-300, 300)  # out of order
        out.append(("payment" if rnd.random() < 0.3 else "order", key, max(0, ts)))
    return out


@pytest.mark.parametrize("seed, backend", [(1, "memory"), (2, "memory"), (3, "rocksdb")])
def test_stream_time_timers_match_the_reference_across_aborts_and_crashes(
    tmp_path: Path, seed: int, backend: str
) -> None:
    events = _events(seed)
    want = fired(events, TIMEOUT, every=500, at=2_000)
    want_alerts = [(key, t) for what, key, t in want if what == "key"]
    want_ticks = [t for what, _, t in want if what != "key"]
    rnd = random.Random(seed)
    with TestDriver(_alerts_app(backend), state_dir=str(tmp_path)) as driver:
        for kind, key, ts in events:
            driver.pipe("orders", key, kind, timestamp=ts, commit=False)
            fate = rnd.random()
            if fate < 0.1:
                driver.abort()
            elif fate < 0.2:
                driver.crash()
            elif fate < 0.6:
                driver.commit()
        driver.commit()
        alerts = [(r.key, int(r.value)) for r in driver.output("alerts", key_serde=S,
                                                                 value_serde=S)]  # fmt: skip
        ticks = driver.output("ticks", key_serde=S, value_serde=S)
    assert alerts == want_alerts
    assert [int(t.value) for t in ticks] == want_ticks
    assert want_alerts and want_ticks
    assert ticks[0].timestamp == want_ticks[0]  # a timer's outputs carry its time


def test_wall_clock_timers_fire_as_the_driver_clock_advances(tmp_path: Path) -> None:
    app = eokafka.App("timer-wall")

    def every(timer: Timer, ctx: eokafka.ProcessorContext) -> None:
        ctx.send("out", "every", str(timer.time))

    def once(timer: Timer, ctx: eokafka.ProcessorContext) -> None:
        ctx.send("out", "once", str(timer.time))

    def setup(ctx: eokafka.ProcessorContext) -> None:
        ctx.schedule(1_000, every, kind="wall-clock")
        ctx.schedule_at(10_500, once, kind="wall-clock")

    def expired(timer: Timer, ctx: eokafka.ProcessorContext) -> None:
        ctx.send("out", timer.key, f"{timer.kind}@{timer.time}")

    @app.processor("in", key_serde=S, value_serde=S, init=setup, on_timer=expired)
    def proc(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
        ctx.timers.set(record.key, int(record.value), kind="wall-clock")

    with TestDriver(app, start_time_ms=10_000, state_dir=str(tmp_path)) as driver:
        driver.pipe("in", "k", "11700", partition=0)  # init runs: first firing at 11000
        driver.advance_time(600)  # 10600: the one-shot
        driver.commit()
        driver.advance_time(600)  # 11200: every
        driver.advance_time(600)  # 11800: k
        driver.commit()
        driver.crash()  # the one-shot and k fired and committed: never again
        driver.advance_time(5_000)  # a new task at 11800: every fires at 12800, once
        driver.advance_time(1_000)  # and at 17800, one interval after that firing
        driver.commit()
        got = [(r.key, r.value) for r in driver.output("out", key_serde=S, value_serde=S)]
    assert got == [
        ("once", "10500"), ("every", "11000"), ("k", "wall-clock@11700"),
        ("every", "12800"), ("every", "17800"),
    ]


def test_misuse_is_a_clear_error(tmp_path: Path) -> None:
    app = eokafka.App("timer-misuse")

    @app.processor("plain", key_serde=S, value_serde=S)
    def plain(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
        ctx.schedule(10, lambda t, c: None)

    with TestDriver(app, state_dir=str(tmp_path)) as driver:
        with pytest.raises(TopologyError, match=r"ctx.schedule\(...\): timers are for processors"):
            driver.pipe("plain", "k", "v")

    app = eokafka.App("timer-misuse-2")
    calls: list[str] = []

    def setup(ctx: eokafka.ProcessorContext) -> None:
        try:
            ctx.schedule(10, lambda t, c: None, kind="cpu-time")
        except TopologyError as exc:
            calls.append(str(exc))

    @app.processor("in", key_serde=S, value_serde=S, init=setup)
    def proc(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
        if record.value == "schedule":
            ctx.schedule(10, lambda t, c: None)
        else:
            ctx.timers.set(record.key, 5)

    with TestDriver(app, state_dir=str(tmp_path / "2")) as driver:
        with pytest.raises(TopologyError, match="in the processor's init function"):
            driver.pipe("in", "k", "schedule")
    with TestDriver(app, state_dir=str(tmp_path / "3")) as driver:
        with pytest.raises(TopologyError, match="has no on_timer callback"):
            driver.pipe("in", "k", "set")
    assert calls and "kind must be one of ('stream-time', 'wall-clock'), not 'cpu-time'" in calls[0]


def test_describe_shows_the_timer_store() -> None:
    app = _alerts_app()
    text = app.topology.describe("timer-alerts")
    assert "     timers (init=setup, on_timer=expired) kept in store orders-timers" in text
    assert "store orders-timers (memory), changelog timer-alerts-orders-timers-changelog" in text


def test_the_readme_example_runs(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("### Timers") :]
    code = section[section.index("```python\n") + 10 : section.index("```\n", 10)]
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md#timers", "exec"), namespace)
    app = namespace["app"]
    assert isinstance(app, eokafka.App)
    with TestDriver(app, start_time_ms=1_000, state_dir=str(tmp_path)) as driver:
        driver.pipe("orders", "o1", {"type": "order"}, timestamp=1_000)
        driver.pipe("orders", "o2", {"type": "order"}, timestamp=2_000)
        driver.pipe("orders", "o2", {"type": "payment"}, timestamp=3_000)
        driver.pipe("orders", "x", {"type": "other"}, timestamp=961_000)
        driver.advance_time(11_000)
        driver.commit()
        alerts = driver.output("alerts", key_serde=S, value_serde=J)
        ticks = driver.output("ticks", key_serde=S, value_serde=S)
    assert [(r.key, r.value) for r in alerts] == [("o1", {"unpaid-since": 1_000})]
    assert [(r.value, r.timestamp) for r in ticks] == [("960000", 960_000), ("11000", 11_000)]


def test_a_raising_wall_clock_callback_stops_the_worker_naming_it(tmp_path: Path) -> None:
    app = eokafka.App("timer-raises")

    def boom(timer: Timer, ctx: eokafka.ProcessorContext) -> None:
        raise KeyError("missing")

    def setup(ctx: eokafka.ProcessorContext) -> None:
        ctx.schedule(1_000, boom, kind="wall-clock")

    @app.processor("in", key_serde=S, value_serde=S, init=setup)
    def proc(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
        pass

    with TestDriver(app, state_dir=str(tmp_path)) as driver:
        with pytest.raises(TimerError, match=r"processor 'proc', partition 0: a wall-clock "
                           r"timer callback raised KeyError: 'missing'"):  # fmt: skip
            driver.advance_time(1_000)
