"""Event-time windows on a real broker: every window type against the plain-Python reference,
final results exactly once through SIGKILLs, and bounded stores over a long run.

Workers are real ``eokafka run`` processes running tests/apps/window_apps.py. Inputs are
shuffled, out of order and partly late, over several partitions; outputs are read
read_committed once the app's committed offsets reached the end of its input.
"""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from tests.integration.harness import AppTopics, app_topics, wait_for, worker
from tests.integration.test_dsl import _table_loaded
from tests.integration.test_operations import _free_port, _samples
from tests.kafka_helpers import (
    Record,
    create_topic,
    end_offsets,
    produce_records,
    read_committed,
    unique_name,
)
from tests.windows_reference import RECENT, SPECS, Rec, expected, shuffled_input

pytestmark = pytest.mark.integration
TARGET = "tests.apps.window_apps:app"
Win = tuple[str, int, int]


def _produce(bootstrap: str, topic: str, data: dict[int, list[Rec]], ts_field: bool) -> None:
    """Each partition's records in order, with CreateTime = event time (and in the value)."""
    for p, records in data.items():
        produce_records(
            bootstrap,
            topic,
            [(k.encode(), json.dumps({"ts": ts, "v": v}).encode()) for k, ts, v in records],
            partition=p,
            timestamps=None if ts_field else [ts for _, ts, _ in records],
        )


def _flushed(data: dict[int, list[Rec]], ahead: int = 10_000) -> dict[int, list[Rec]]:
    """A last record per partition far enough ahead to close every window before it."""
    end = max(ts for records in data.values() for _, ts, _ in records) + ahead
    return {p: [*records, (f"~flush{p}", end, 0)] for p, records in data.items()}


def _windowed(records: list[Record]) -> list[tuple[Win, Any]]:
    """(key, start, end) and value of each output, decoding the documented wire format."""
    out = []
    for r in records:
        assert r.key is not None
        start = int.from_bytes(r.key[-16:-8], "big", signed=True)
        end = int.from_bytes(r.key[-8:], "big", signed=True)
        out.append(((r.key[:-16].decode(), start, end), r.value and json.loads(r.value)))
    return out


def _once(outputs: list[tuple[Win, Any]]) -> dict[Win, Any]:
    seen: dict[Win, list[Any]] = {}
    for window, value in outputs:
        seen.setdefault(window, []).append(value)
    twice = {w: v for w, v in seen.items() if len(v) > 1}
    assert not twice, f"{len(twice)} final results emitted more than once: {list(twice)[:3]}"
    return {w: v[0] for w, v in seen.items()}


def _diff(got: dict[Win, Any], want: dict[Win, Any]) -> str:
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(w for w in set(got) & set(want) if got[w] != want[w])
    return (
        f"{len(missing)} missing e.g. {missing[:3]}, {len(extra)} unexpected e.g. {extra[:3]}, "
        f"{len(wrong)} wrong e.g. {[(w, got[w], want[w]) for w in wrong[:3]]}"
    )


def _run_to_end(bootstrap: str, names: AppTopics, timeout: float = 120) -> list[Record]:
    """Wait until the app committed its whole input (outputs commit with the offsets)."""
    wait_for(lambda: _table_loaded(bootstrap, names.app_id, names.src), timeout, "the input")
    return read_committed(bootstrap, names.out)


CASES = {  # window: (aggregation, emit, event time from the value, late policy)
    "tumbling": ("count", "final", False, "drop"),
    "hopping": ("sum", "update", True, "drop"),
    "sliding": ("max", "final", True, "drop"),
    "session": ("mean", "final", False, "dead-letter"),
}


@pytest.mark.parametrize(
    "kind, base",
    [(kind, None) for kind in CASES] + [("hopping", 0), ("sliding", 0)],
    ids=[*CASES, "hopping-from-the-epoch", "sliding-from-the-epoch"],
)
def test_each_window_type_matches_the_reference(
    kafka_bootstrap: str, tmp_path: Path, kind: str, base: int | None
) -> None:
    """From the epoch (event times from 0, in the value): no window starts before 0."""
    agg, emit, ts_field, late = CASES[kind]
    spec = SPECS[kind][0]
    rng = random.Random(kind)
    data = shuffled_input(
        rng, 3, 250, 9, step=41, disorder=500, late_every=17, late_by=1_200, base=base
    )
    data = _flushed(data)
    want = expected(spec, data, agg)
    names = app_topics(kafka_bootstrap, f"win-{kind}", 3, create_output=False)
    # Outputs carry the event time: kept for ever, as 1970 is past any time retention.
    create_topic(kafka_bootstrap, names.out, 3, config={"retention.ms": "-1"})
    env = {
        **names.env,
        "TEST_WINDOW": kind,
        "TEST_AGG": agg,
        "TEST_EMIT": emit,
        "TEST_LATE": late,
        "TEST_TS_FIELD": "1" if ts_field else "",
    }
    _produce(kafka_bootstrap, names.src, data, ts_field)
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, ["--instance-id", "w"]).start()
    try:
        outputs = _windowed(_run_to_end(kafka_bootstrap, names))
        if emit == "final":
            got, wanted = _once(outputs), want.final
        else:  # the last update per window; merged-away sessions end as tombstones
            got = {k: v for k, v in dict(outputs).items() if v is not None}
            wanted = want.final | want.open
        assert got == wanted, _diff(got, wanted)
        assert all(start >= 0 for _, start, _ in got)
        assert want.late
        if late == "dead-letter":
            dead = read_committed(kafka_bootstrap, f"{names.app_id}-dlq")
            where = sorted(
                (int(h["eokafka.source.partition"]), int(h["eokafka.source.offset"]))
                for h in (dict(r.headers) for r in dead)
            )
            assert where == sorted(want.late)
            assert {dict(r.headers)["eokafka.error.class"] for r in dead} == {b"LateRecordError"}
        else:
            assert "late for window store 'agg'" in w.log() and ", dropped" in w.log()
        assert w.terminate() == 0, w.log()[-3000:]
    finally:
        w.stop_quietly()


def test_final_results_exactly_once_through_sigkill(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Workers die right after closing a window and before committing, and at random."""
    spec = SPECS["hopping"][0]
    rng = random.Random(99)
    data = shuffled_input(rng, 4, 2_500, 12, step=20, disorder=300, late_every=29, late_by=800)
    data = _flushed(data)
    want = expected(spec, data, "count")
    base = min(ts for records in data.values() for _, ts, _ in records)
    starts = [(base + int(f * 50_000)) // 250 * 250 for f in (0.2, 0.45, 0.7)]  # every key's
    names = app_topics(kafka_bootstrap, "win-chaos", 4)
    pause_dir = tmp_path / "pause"
    pause_dir.mkdir()
    env = {
        **names.env,
        "TEST_WINDOW": "hopping",
        "TEST_AGG": "count",
        "TEST_EMIT": "final",
        "TEST_BACKEND": "rocksdb",
        "TEST_PAUSE_DIR": str(pause_dir),
        "TEST_PAUSE_STARTS": ",".join(map(str, starts)),
    }
    workers = [
        worker(TARGET, kafka_bootstrap, tmp_path, f"w{i}", env, ["--instance-id", f"w{i}"])
        for i in range(2)
    ]
    chunks = [{p: recs[i : i + 500] for p, recs in data.items()} for i in range(0, 2_501, 500)]
    feeder = threading.Thread(
        target=lambda: [_produce(kafka_bootstrap, names.src, c, False) for c in chunks]
    )
    handled: set[str] = set()
    try:
        for w in workers:
            w.start()
        feeder.start()
        kills = 0
        while len(handled) < len(starts):
            wait_for(
                lambda: any(
                    m.name not in handled and m.read_text() for m in pause_dir.glob("paused-*")
                ),
                120,
                "a worker paused after closing a window",
            )
            marker = next(
                m for m in pause_dir.glob("paused-*") if m.name not in handled and m.read_text()
            )
            handled.add(marker.name)
            pid = int(marker.read_text())
            victim = next((w for w in workers if w.proc and w.proc.pid == pid), None)
            if victim is None:  # it paused, then died in the random kill below
                continue
            victim.kill()  # its open transaction holds the final result and the tombstone
            victim.start()
            kills += 1
            if kills == 2:  # and one more, of the other worker, wherever it is
                other = next(w for w in workers if w is not victim)
                other.kill()
                other.start()
        feeder.join(120)
        got = _once(_windowed(_run_to_end(kafka_bootstrap, names, timeout=180)))
        assert got == want.final, _diff(got, want.final)
        assert len(got) > 2_000
        for w in workers:
            assert w.terminate() == 0, w.log()[-3000:]
    finally:
        for w in workers:
            w.stop_quietly()


def _all_deleted(bootstrap: str, topic: str) -> bool:
    """Whether the broker deleted every record of ``topic`` (low watermark = high watermark)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("wm")})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        marks = [consumer.get_watermark_offsets(TopicPartition(topic, p), 10) for p in parts]
    finally:
        consumer.close()
    return all(low == high > 0 for low, high in marks)


def test_stream_time_outlives_the_window_changelog_retention(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A partition idle for longer than the window changelog's retention: the broker deletes
    every record of it. After a restore, a record late by the stream time before the idle
    time must still be late: its window's final result went out already."""
    spec = SPECS["tumbling"][0]  # 1 s windows, 300 ms grace
    partitions = 2
    first = {p: [(f"k{p}", RECENT + i * 100, 1) for i in range(30)] for p in range(partitions)}
    # Late by 2.4 s for window [RECENT, RECENT + 1000), closed at RECENT + 1300; then a
    # record that closes every window before it, and one that closes that record's window.
    then = {
        p: [(f"k{p}", RECENT + t, 1) for t in (500, 10_000, 20_000)] for p in range(partitions)
    }
    whole = {p: first[p] + then[p] for p in range(partitions)}
    want = expected(spec, whole, "count")
    assert {(p, 30) for p in range(partitions)} <= set(want.late)
    # The windows open when the partition went idle go with the changelog (the README says
    # why the retention must exceed the longest idle time with open windows).
    gone = set(expected(spec, first, "count").open)
    names = app_topics(kafka_bootstrap, "win-retention", partitions)
    env = {
        **names.env,
        "TEST_WINDOW": "tumbling",
        "TEST_AGG": "count",
        "TEST_EMIT": "final",
        "TEST_RETENTION_MS": "2000",
    }
    changelog = f"{names.app_id}-agg-changelog"
    _produce(kafka_bootstrap, names.src, first, False)
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, ["--instance-id", "w"]).start()
    try:
        _run_to_end(kafka_bootstrap, names)
        assert w.terminate() == 0, w.log()[-3000:]
        # The log cleaner deletes a compact,delete log's expired segments every 15 s or so
        # (log.cleaner.backoff.ms), the active one too once all of it expired.
        wait_for(lambda: _all_deleted(kafka_bootstrap, changelog), 180, "retention to delete "
                 f"the changelog {changelog}", interval=1)
        clock = f"{names.app_id}-agg-stream-time-changelog"  # compacted only: still there
        last = {r.partition: r.value for r in read_committed(kafka_bootstrap, clock)}
        assert last == {p: (RECENT + 2_900).to_bytes(8, "big") for p in range(partitions)}
        w.start()  # restores the window store from an empty changelog
        _produce(kafka_bootstrap, names.src, then, False)
        got = _once(_windowed(_run_to_end(kafka_bootstrap, names)))
        wanted = {k: v for k, v in want.final.items() if k not in gone}
        assert got == wanted, _diff(got, wanted)
        assert "late for window store 'agg'" in w.log()
        assert w.terminate() == 0, w.log()[-3000:]
    finally:
        w.stop_quietly()


def _changelog_keys(bootstrap: str, topic: str) -> int:
    """How many keys a full restore of the changelog would bring back."""
    live: dict[bytes | None, bool] = {}
    for r in read_committed(bootstrap, topic):
        live[r.key] = r.value is not None
    return sum(live.values())


def test_window_stores_stay_bounded_over_a_long_run(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Expiry in update mode: closed windows are tombstoned, and the changelog is also
    time-limited (compact,delete with the windows' reach as retention)."""
    n, partitions = 30_000, 2
    data = {
        p: [(f"u{i // 300}-{i % 25}", RECENT + i * 10, 1) for i in range(n)]
        for p in range(partitions)
    }  # 300 s of event time; 2,500 keys come and go
    names = app_topics(kafka_bootstrap, "win-expiry", partitions)
    env = {**names.env, "TEST_WINDOW": "tumbling", "TEST_EMIT": "update"}
    _produce(kafka_bootstrap, names.src, data, False)
    port = _free_port()
    extra = ["--instance-id", "w", "--metrics-port", str(port)]
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, extra).start()
    changelog = f"{names.app_id}-agg-changelog"
    try:
        outputs = _run_to_end(kafka_bootstrap, names)
        assert len(outputs) == n * partitions  # one update per record
        assert w.terminate() == 0, w.log()[-3000:]
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})  # alive until answered
        config = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, changelog)])
        entries = next(iter(config.values())).result(30)
        assert entries["cleanup.policy"].value == "compact,delete"
        assert int(entries["retention.ms"].value) == 1_300 + 24 * 3_600_000
        # Live windows span size + grace = 1.3 s of event time: about 130 records, 25 keys
        # per partition, plus the stream time; 2,500 keys were written to each partition.
        live = _changelog_keys(kafka_bootstrap, changelog)
        assert live <= partitions * 30, live
        assert sum(end_offsets(kafka_bootstrap, changelog).values()) > 2 * live
        # A restart restores what the changelog holds; the gauge shows it at the next commit.
        w.start()
        more = {p: [("u-next", RECENT + n * 10, 1)] for p in range(partitions)}
        _produce(kafka_bootstrap, names.src, more, False)
        keys = ("eokafka_store_keys", (("partition", "0"), ("store", "agg")))

        def restored() -> bool:
            try:
                return keys in _samples(port)
            except OSError:
                return False

        wait_for(restored, 60, "the store size gauge after the restore")
        assert 0 < _samples(port)[keys] <= 30
        assert w.terminate() == 0, w.log()[-3000:]
    finally:
        w.stop_quietly()
