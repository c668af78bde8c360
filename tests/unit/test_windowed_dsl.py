"""Windowed aggregations in the DSL, run by the worker itself through eokafka.testing.

The test driver gives the worker in-memory Kafka clients: transactions commit or abort
sends, store writes and offsets together, crashes restore fresh stores from the changelog
topics, and aborted batches are replayed from the committed offsets. Results are compared
with tests/windows_reference.py.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import pytest

import eokafka
from eokafka import serdes, windows
from eokafka.errors import PoisonRecordError, TopologyError
from eokafka.state import StreamTimeStore, WindowStore
from eokafka.testing import TestDriver
from eokafka.windows import Windowed, WindowedSerde
from tests.windows_reference import SPECS, Rec, expected, shuffled_input

S, J, B = serdes.String(), serdes.Json(), serdes.Bytes()


def _driver(app: eokafka.App, tmp: Path, partitions: int = 3) -> TestDriver:
    return TestDriver(app, partitions=partitions, state_dir=str(tmp))


def _feed(driver: TestDriver, p: int, key: bytes, value: bytes, ts: int) -> None:
    """Write a record as bytes; the worker processes it at the next process or commit."""
    driver.write("in", key, value, timestamp=ts, partition=p, key_serde=B, value_serde=B)


def _results(driver: TestDriver, topic: str = "out", key: Any = S) -> list[tuple[Windowed, Any]]:
    records = driver.output(topic, key_serde=WindowedSerde(key), value_serde=J)
    return [(r.key, r.value) for r in records]


def _late(driver: TestDriver, action: str) -> float:
    return driver.metric("eokafka_late_records_total", store="agg", action=action)


def _aggregate(w: eokafka.WindowedStream, agg: str, name: str, emit: str) -> Any:
    if agg == "aggregate":
        return w.aggregate(
            lambda: 0, lambda k, v, a: a + v, merger=lambda k, a, b: a + b, name=name, emit=emit
        )
    if agg == "reduce":
        return w.reduce(max, name=name, emit=emit)
    return getattr(w, agg)(name=name, emit=emit)


def _app(window: windows.Windows, agg: str, emit: str, **kwargs: Any) -> eokafka.App:
    app = eokafka.App("win")
    grouped = app.stream("in", key_serde=S, value_serde=J).group_by_key()
    _aggregate(grouped.window(window, **kwargs), agg, "agg", emit).to("out", value_serde=J)
    return app


def _run(
    driver: TestDriver, data: dict[int, list[Rec]], rng: random.Random, chaos: bool = False
) -> None:
    """Interleave partitions in batches; with chaos, abort or crash now and then: the worker
    then replays the batch from the last commit."""
    cursors = dict.fromkeys(data, 0)
    written = dict.fromkeys(data, 0)
    while any(cursors[p] < len(data[p]) for p in data):
        p = rng.choice([p for p in data if cursors[p] < len(data[p])])
        stop = cursors[p] + rng.randint(1, 40)
        for key, ts, value in data[p][written[p] : stop]:
            _feed(driver, p, S.serialize(key), J.serialize(value), ts)
        written[p] = max(written[p], min(stop, len(data[p])))
        driver.process()
        if chaos and rng.random() < 0.3:
            driver.crash() if rng.random() < 0.5 else driver.abort()
            continue
        driver.commit()
        cursors[p] = written[p]


def _flushed(data: dict[int, list[Rec]], horizon: int) -> dict[int, list[Rec]]:
    """Append a record per partition far enough ahead to close every window before it."""
    end = max(ts for records in data.values() for _, ts, _ in records) + horizon
    return {p: [*records, (f"~flush{p}", end, 0)] for p, records in data.items()}


def _finals(results: list[tuple[Windowed, Any]]) -> dict[tuple[str, int, int], Any]:
    out: dict[tuple[str, int, int], Any] = {}
    for (key, start, end), value in results:
        assert (key, start, end) not in out, f"final result of {key} [{start}, {end}] twice"
        out[(key, start, end)] = value
    return out


@pytest.mark.parametrize("kind", SPECS)
@pytest.mark.parametrize("agg", ["count", "sum", "mean", "aggregate"])
def test_final_results_once_each_through_aborts_and_crashes(
    tmp_path: Path, kind: str, agg: str
) -> None:
    spec, window = SPECS[kind]
    rng = random.Random(5)
    data = shuffled_input(rng, 3, 300, 9, step=41, disorder=500, late_every=17, late_by=1_200)
    data = _flushed(data, 10_000)
    driver = _driver(_app(window, agg, "final"), tmp_path)
    _run(driver, data, rng, chaos=True)
    want = expected(spec, data, agg)
    got = _finals(_results(driver))
    assert got == {k: v for k, v in want.final.items() if not k[0].startswith("~")}
    assert _late(driver, "dropped") == len(want.late) > 0


@pytest.mark.parametrize("kind", SPECS)
@pytest.mark.parametrize("agg", ["min", "max", "reduce"])
def test_updates_end_at_the_reference_values(tmp_path: Path, kind: str, agg: str) -> None:
    spec, window = SPECS[kind]
    rng = random.Random(8)
    data = shuffled_input(rng, 2, 300, 6, step=29, disorder=300, late_every=31, late_by=900)
    driver = _driver(_app(window, agg, "update"), tmp_path, partitions=2)
    _run(driver, data, rng, chaos=True)
    want = expected(spec, data, agg)
    last: dict[tuple[str, int, int], Any] = {}
    for (key, start, end), value in _results(driver):
        last[(key, start, end)] = value
    assert {k: v for k, v in last.items() if v is not None} == want.final | want.open


def test_a_restart_keeps_stream_time_so_a_closed_window_stays_closed(tmp_path: Path) -> None:
    driver = _driver(_app(windows.Tumbling(100), "count", "final"), tmp_path)
    for ts in (10, 20, 150):  # 150 closes [0, 100) with 2 records
        _feed(driver, 0, b"a", b"1", ts)
    driver.commit()
    driver.crash()  # the store comes back from its changelog, stream time with it
    _feed(driver, 0, b"a", b"1", 30)  # late: [0, 100) must not open again
    driver.commit()
    assert _results(driver) == [(Windowed("a", 0, 100), 2)]
    assert (_late(driver, "dropped"), _late(driver, "dead-lettered")) == (1, 0)
    assert isinstance(driver.stores("agg")[0], WindowStore)
    clock = driver.stores("agg-stream-time")[0]
    assert isinstance(clock, StreamTimeStore) and clock.stream_time() == 150


def test_late_records_go_to_the_dead_letter_topic_with_headers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = _app(windows.Tumbling(100, grace_ms=10), "count", "final", late="dead-letter")
    # A dead-letter topic as on_error="dead-letter" makes it, not an internal topic.
    assert app.topology.internal_topics == {}
    assert app.topology.dead_letters
    driver = _driver(app, tmp_path)
    with caplog.at_level(logging.WARNING, "eokafka.windows"):
        for ts in (10, 120, 5):  # 120 closes [0, 100) at 100 + 10: 5 is late
            driver.write(
                "in", b"a", b"7", timestamp=ts, partition=1, headers=[("trace", b"t1")],
                key_serde=B, value_serde=B,
            )  # fmt: skip
        driver.commit()
    [dead] = driver.output("win-dlq")
    assert (dead.key, dead.value) == (b"a", b"7")
    h = dict(dead.headers)
    assert h["trace"] == b"t1"  # the record's own headers come first
    assert h["eokafka.error.stage"] == b"window"
    assert h["eokafka.error.class"] == b"LateRecordError"
    assert h["eokafka.source.topic"] == b"in"
    assert h["eokafka.source.partition"] == b"1"
    assert h["eokafka.source.offset"] == b"2"
    assert b"stream time 120" in h["eokafka.error.message"]
    assert (_late(driver, "dropped"), _late(driver, "dead-lettered")) == (0, 1)
    assert "in[1]@2" in caplog.text


def test_store_size_stays_bounded_as_time_advances(tmp_path: Path) -> None:
    """Expiry: closed windows leave the store (and its index) in update mode as well."""
    app = _app(windows.Hopping(1_000, advance_ms=500, grace_ms=500), "count", "update")
    driver = _driver(app, tmp_path)
    sizes = []
    for i in range(60_000):
        key = S.serialize(f"user-{i % 5_000 // 10}-{i // 5_000}")  # keys come and go
        _feed(driver, 0, J.serialize(key.decode()), b"1", i * 5)
        if i % 1_000 == 999:
            driver.commit()
            store = driver.stores("agg")[0]
            assert isinstance(store, WindowStore)
            sizes.append((len(store), store.index_size))
    # 5 s of event time per 1,000 records: about 2 s (size + grace) of keys stay open.
    assert max(s for s, _ in sizes) < 700
    assert max(i for _, i in sizes) < 1_500
    changelog = [r for r in driver.output("win-agg-changelog") if r.partition == 0]
    assert len(changelog) > 60_000 // 10  # tombstones went out too


def test_timestamps_from_the_source_cross_a_repartition(tmp_path: Path) -> None:
    app = eokafka.App("ts")
    (
        app.stream("in", key_serde=S, value_serde=J, timestamp=lambda r: r.value["at"])
        .group_by(lambda k, v: v["user"], name="by-user")
        .window(windows.Tumbling(100))
        .sum(lambda v: v["n"], name="sums", emit="final")
        .to("out", value_serde=J)
    )
    driver = _driver(app, tmp_path)
    for i, (user, at) in enumerate([("u", 5), ("u", 50), ("v", 60), ("u", 260), ("v", 270)]):
        value = J.serialize({"user": user, "at": at, "n": i})
        _feed(driver, 0, S.serialize(f"r{i}"), value, 99_999)
    driver.commit()
    assert sorted(_results(driver, key=J)) == [  # repartitioned keys are JSON
        (Windowed("u", 0, 100), 0 + 1),
        (Windowed("v", 0, 100), 2),
    ]
    hops = [r.timestamp for r in driver.output("ts-by-user-repartition")]
    assert hops == [5, 50, 60, 260, 270]  # the repartition records carry the event times


def test_a_window_timestamp_function_sees_the_grouped_record(tmp_path: Path) -> None:
    app = eokafka.App("wts")
    (
        app.stream("in", key_serde=S, value_serde=J)
        .map_values(lambda v: {"t": v * 10})
        .group_by_key()
        .window(windows.Session(25), timestamp=lambda r: r.value["t"] + r.timestamp)
        .count(name="sessions", emit="final")
        .to("out", value_serde=J)
    )
    driver = _driver(app, tmp_path)
    for v in (1, 2, 4, 10):  # event times 1001, 1021, 1041, 1101 with record timestamp 1000
        _feed(driver, 0, b"k", J.serialize(v), 1_000)
    driver.commit()
    assert _results(driver) == [(Windowed("k", 1_010, 1_040), 3)]


def test_a_bad_event_time_is_a_poison_record(tmp_path: Path) -> None:
    app = eokafka.App("bad")
    grouped = app.stream("in", key_serde=S, value_serde=J, timestamp=lambda r: r.value)
    grouped.group_by_key().window(windows.Tumbling(10)).count(name="c")
    driver = _driver(app, tmp_path)
    _feed(driver, 0, b"k", b"1.5", 0)
    with pytest.raises(PoisonRecordError, match=r"in\[0\]@0 \(process\): ValueError: .*event time"):
        driver.process()


def test_windowed_aggregations_declare_window_stores_and_refuse_misuse() -> None:
    app = eokafka.App("decl")
    grouped = app.stream("in", key_serde=S, value_serde=J).group_by_key()
    table = grouped.window(windows.Tumbling(60_000, grace_ms=5_000)).count(name="per-min")
    grouped.window(windows.Session(1_000), retention_ms=7_200_000).max(name="longest")
    app.store("per-min", backend="rocksdb")
    app.topology.validate()
    spec = app.topology.stores["per-min"]
    assert (spec.backend, spec.window_retention_ms) == ("rocksdb", 65_000 + 24 * 3_600_000)
    assert spec.changelog_config() == {
        "cleanup.policy": "compact,delete",
        "retention.ms": str(65_000 + 24 * 3_600_000),
    }
    assert app.topology.stores["longest"].window_retention_ms == 7_200_000
    assert "store per-min (rocksdb, window)" in app.topology.describe()
    assert table.key_serde.name == "Windowed(String)"
    with pytest.raises(TopologyError, match="windowed"):
        app.stream("other", key_serde=S, value_serde=J).join(table, lambda a, b: a)
    with pytest.raises(TopologyError, match="merger"):
        grouped.window(windows.Session(10)).aggregate(lambda: 0, lambda k, v, a: a, name="x")
    with pytest.raises(TopologyError, match="emit"):
        grouped.window(windows.Tumbling(10)).count(name="y", emit="sometimes")  # type: ignore[arg-type]
    with pytest.raises(TopologyError, match="late"):
        grouped.window(windows.Tumbling(10), late="keep")  # type: ignore[arg-type]
    with pytest.raises(TopologyError, match="eokafka.windows"):
        grouped.window(60_000)  # type: ignore[arg-type]
    with pytest.raises(TopologyError, match="already used"):
        grouped.window(windows.Tumbling(10)).count(name="per-min")


def test_stream_time_has_a_compacted_store_of_its_own() -> None:
    """The window changelog deletes by time; the stream time must outlive that (see
    tests/integration/test_windows.py for the broker deleting it)."""
    app = eokafka.App("clock")
    grouped = app.stream("in", key_serde=S, value_serde=J).group_by_key()
    grouped.window(windows.Tumbling(60_000)).count(name="per-min")
    app.store("per-min", backend="rocksdb")
    app.topology.validate()
    clock = app.topology.stores["per-min-stream-time"]
    assert (clock.backend, clock.stream_time_of, clock.window_retention_ms) == (
        "rocksdb", "per-min", None
    )
    assert clock.changelog_config() == {"cleanup.policy": "compact"}
    assert app.topology.stores["per-min"].changelog_config()["cleanup.policy"] == "compact,delete"
    app.topology.validate()  # again: the same

    taken = eokafka.App("taken")
    taken.stream("in", key_serde=S, value_serde=J).group_by_key().window(
        windows.Tumbling(10)
    ).count(name="w")
    taken.store("w-stream-time", backend="sqlite")
    with pytest.raises(TopologyError, match="keeps its stream time"):
        taken.topology.validate()

    used = eokafka.App("used")
    used.stream("in", key_serde=S, value_serde=J).group_by_key().window(
        windows.Tumbling(10)
    ).count(name="w")

    @used.processor("other", stores=["w-stream-time"])
    def other(ctx: Any, key: Any, value: Any) -> None:
        pass

    with pytest.raises(TopologyError, match="keeps its stream time"):
        used.topology.validate()
