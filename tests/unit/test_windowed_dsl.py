"""Windowed aggregations in the DSL, run through the real operators and window stores.

The runner below plays the worker's part without Kafka: one transaction per batch (sends and
store writes committed together, or aborted together), a changelog per store kept from the
committed writes, and restarts that restore fresh stores from it. Results are compared with
tests/windows_reference.py.
"""

from __future__ import annotations

import logging
import random
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

import eokafka
from eokafka import serdes, windows
from eokafka.context import ProcessorContext
from eokafka.errors import TopologyError
from eokafka.metrics import TxnTally
from eokafka.record import Record
from eokafka.state import Store, WindowStore, open_store
from eokafka.windows import Windowed, WindowedSerde
from tests.windows_reference import SPECS, Rec, expected, shuffled_input

S, J = serdes.String(), serdes.Json()


class Message:
    """What Record reads from a consumed message."""

    def __init__(self, topic: str, partition: int, offset: int, key: Any, value: Any, ts: int):
        self._t, self._p, self._o, self._k, self._v, self._ts = (
            topic, partition, offset, key, value, ts
        )  # fmt: skip

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> Any:
        return self._k

    def value(self) -> Any:
        return self._v

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)

    def headers(self) -> list[tuple[str, bytes]]:
        return [("trace", b"t1")]


class Runner:
    """Feeds records through an app's processors the way the worker would."""

    def __init__(self, app: eokafka.App, tmp: Path, partitions: int = 3) -> None:
        app.topology.validate()
        self.app, self.tmp, self.partitions = app, tmp, partitions
        self.routes = app.topology.by_topic()
        self.stores: dict[tuple[str, int], Store] = {}
        self.changelog: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = defaultdict(list)
        self.out: list[tuple[str, Any, Any, Any, int | None]] = []  # committed sends
        self.txn: list[tuple[str, Any, Any, Any, int | None]] = []
        self.offsets: dict[tuple[str, int], int] = defaultdict(int)
        self.fed: list[tuple[str, int]] = []  # (topic, timestamp) of every record fed
        self.tally = TxnTally()
        self.late: dict[tuple[str, str], int] = defaultdict(int)
        self.ctx = ProcessorContext(lambda t: None, self.store, self.tally.dropped, self.tally.late)

    def store(self, name: str, partition: int) -> Store:
        if (name, partition) not in self.stores:
            spec = self.app.topology.stores[name]
            store = open_store(spec, self.tmp, self.app.application_id, partition)
            records = self.changelog[(name, partition)]
            store.restore_batch(records, len(records))
            self.stores[(name, partition)] = store
        return self.stores[(name, partition)]

    def feed(self, topic: str, partition: int, key: Any, value: Any, ts: int) -> None:
        offset = self.offsets[(topic, partition)]
        self.offsets[(topic, partition)] += 1
        msg = Message(topic, partition, offset, key, value, ts)
        self.fed.append((topic, ts))
        self.ctx.partition = partition
        sends = []
        for source in self.routes[topic]:
            record = Record(
                source.key_serde.deserialize(key), source.value_serde.deserialize(value), msg
            )
            source.fn(record, self.ctx)
            sends.extend(self.ctx.pending)
            self.ctx.pending.clear()
        for t, v, k, _, stamp, headers in sends:
            if t in self.routes:  # a repartition hop
                p = zlib.crc32(k) % self.partitions
                self.feed(t, p, k, v, ts if stamp is None else stamp)
            else:
                self.txn.append((t, k, v, headers, stamp))

    def commit(self) -> None:
        for key, store in self.stores.items():
            self.changelog[key].extend(store.pending_changelog().items())
            store.commit(None)
        self.out.extend(self.txn)
        self.txn = []
        for k, n in self.tally.late.items():
            self.late[k] += n
        self.tally.clear()

    def abort(self) -> None:
        for store in self.stores.values():
            store.abort()
        self.txn = []
        self.tally.clear()

    def restart(self) -> None:
        """A crash: uncommitted work is gone; stores come back from their changelogs."""
        self.abort()
        for store in self.stores.values():
            store.close()
        self.stores = {}

    def results(self, topic: str = "out", key: Any = S) -> list[tuple[Windowed, Any]]:
        serde = WindowedSerde(key)
        return [
            (serde.deserialize(k), J.deserialize(v)) for t, k, v, _, _ in self.out if t == topic
        ]


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
    runner: Runner, data: dict[int, list[Rec]], rng: random.Random, chaos: bool = False
) -> None:
    """Interleave partitions in batches; with chaos, abort or crash now and then and replay."""
    cursors = dict.fromkeys(data, 0)
    while any(cursors[p] < len(data[p]) for p in data):
        p = rng.choice([p for p in data if cursors[p] < len(data[p])])
        batch = data[p][cursors[p] : cursors[p] + rng.randint(1, 40)]
        for key, ts, value in batch:
            runner.feed("in", p, S.serialize(key), J.serialize(value), ts)
        if chaos and rng.random() < 0.3:
            runner.offsets[("in", p)] -= len(batch)
            runner.restart() if rng.random() < 0.5 else runner.abort()
            continue  # the batch is replayed
        runner.commit()
        cursors[p] += len(batch)


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
    runner = Runner(_app(window, agg, "final"), tmp_path)
    _run(runner, data, rng, chaos=True)
    want = expected(spec, data, agg)
    got = _finals(runner.results())
    assert got == {k: v for k, v in want.final.items() if not k[0].startswith("~")}
    assert runner.late[("agg", "dropped")] == len(want.late) > 0


@pytest.mark.parametrize("kind", SPECS)
@pytest.mark.parametrize("agg", ["min", "max", "reduce"])
def test_updates_end_at_the_reference_values(tmp_path: Path, kind: str, agg: str) -> None:
    spec, window = SPECS[kind]
    rng = random.Random(8)
    data = shuffled_input(rng, 2, 300, 6, step=29, disorder=300, late_every=31, late_by=900)
    runner = Runner(_app(window, agg, "update"), tmp_path, partitions=2)
    _run(runner, data, rng, chaos=True)
    want = expected(spec, data, agg)
    last: dict[tuple[str, int, int], Any] = {}
    for (key, start, end), value in runner.results():
        last[(key, start, end)] = value
    assert {k: v for k, v in last.items() if v is not None} == want.final | want.open


def test_a_restart_keeps_stream_time_so_a_closed_window_stays_closed(tmp_path: Path) -> None:
    runner = Runner(_app(windows.Tumbling(100), "count", "final"), tmp_path)
    for ts in (10, 20, 150):  # 150 closes [0, 100) with 2 records
        runner.feed("in", 0, b"a", b"1", ts)
    runner.commit()
    runner.restart()
    runner.feed("in", 0, b"a", b"1", 30)  # late: [0, 100) must not open again
    runner.commit()
    assert runner.results() == [(Windowed("a", 0, 100), 2)]
    assert runner.late == {("agg", "dropped"): 1}
    store = runner.store("agg", 0)
    assert isinstance(store, WindowStore) and store.stream_time() == 150


def test_late_records_go_to_the_dead_letter_topic_with_headers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runner = Runner(
        _app(windows.Tumbling(100, grace_ms=10), "count", "final", late="dead-letter"), tmp_path
    )  # noqa: E501
    assert runner.app.topology.internal_topics == {"win-dlq": "in"}
    with caplog.at_level(logging.WARNING, "eokafka.windows"):
        for ts in (10, 120, 5):  # 120 closes [0, 100) at 100 + 10: 5 is late
            runner.feed("in", 1, b"a", b"7", ts)
    runner.commit()
    [dead] = [o for o in runner.out if o[0] == "win-dlq"]
    _, key, value, headers, _ = dead
    assert (key, value) == (b"a", b"7")
    h = dict(headers)
    assert h["trace"] == b"t1"  # the record's own headers come first
    assert h["eokafka.error.stage"] == b"window"
    assert h["eokafka.error.class"] == b"LateRecordError"
    assert h["eokafka.source.topic"] == b"in"
    assert h["eokafka.source.partition"] == b"1"
    assert h["eokafka.source.offset"] == b"2"
    assert b"stream time 120" in h["eokafka.error.message"]
    assert runner.late == {("agg", "dead-lettered"): 1}
    assert "in[1]@2" in caplog.text


def test_store_size_stays_bounded_as_time_advances(tmp_path: Path) -> None:
    """Expiry: closed windows leave the store (and its index) in update mode as well."""
    runner = Runner(
        _app(windows.Hopping(1_000, advance_ms=500, grace_ms=500), "count", "update"), tmp_path
    )  # noqa: E501
    sizes = []
    for i in range(60_000):
        key = S.serialize(f"user-{i % 5_000 // 10}-{i // 5_000}")  # keys come and go
        runner.feed("in", 0, J.serialize(key.decode()), b"1", i * 5)
        if i % 1_000 == 999:
            runner.commit()
            store = runner.stores[("agg", 0)]
            assert isinstance(store, WindowStore)
            sizes.append((len(store), store.index_size))
    # 5 s of event time per 1,000 records: about 2 s (size + grace) of keys stay open.
    assert max(s for s, _ in sizes) < 700
    assert max(i for _, i in sizes) < 1_500
    assert len(runner.changelog[("agg", 0)]) > 60_000 // 10  # tombstones went out too


def test_timestamps_from_the_source_cross_a_repartition(tmp_path: Path) -> None:
    app = eokafka.App("ts")
    (
        app.stream("in", key_serde=S, value_serde=J, timestamp=lambda r: r.value["at"])
        .group_by(lambda k, v: v["user"], name="by-user")
        .window(windows.Tumbling(100))
        .sum(lambda v: v["n"], name="sums", emit="final")
        .to("out", value_serde=J)
    )
    runner = Runner(app, tmp_path)
    for i, (user, at) in enumerate([("u", 5), ("u", 50), ("v", 60), ("u", 260), ("v", 270)]):
        runner.feed(
            "in", 0, S.serialize(f"r{i}"), J.serialize({"user": user, "at": at, "n": i}), 99_999
        )  # noqa: E501
    runner.commit()
    assert sorted(runner.results(key=J)) == [  # repartitioned keys are JSON
        (Windowed("u", 0, 100), 0 + 1),
        (Windowed("v", 0, 100), 2),
    ]
    hops = [ts for topic, ts in runner.fed if topic == "ts-by-user-repartition"]
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
    runner = Runner(app, tmp_path)
    for v in (1, 2, 4, 10):  # event times 1001, 1021, 1041, 1101 with record timestamp 1000
        runner.feed("in", 0, b"k", J.serialize(v), 1_000)
    runner.commit()
    assert runner.results() == [(Windowed("k", 1_010, 1_040), 3)]


def test_a_bad_event_time_is_a_poison_record(tmp_path: Path) -> None:
    app = eokafka.App("bad")
    grouped = app.stream("in", key_serde=S, value_serde=J, timestamp=lambda r: r.value)
    grouped.group_by_key().window(windows.Tumbling(10)).count(name="c")
    runner = Runner(app, tmp_path)
    with pytest.raises(ValueError, match="event time"):
        runner.feed("in", 0, b"k", b"1.5", 0)


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
