"""Bounded runs (--until-end, --max-records, --max-seconds) with real worker processes.

Every check reads the output read_committed and compares it, record by record, with the
inputs the run was bound to: each exactly once, nothing from after the start.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.integration.harness import AppTopics, WorkerProcess, app_topics, wait_for, worker
from tests.kafka_helpers import produce_records, read_committed, unique_name

pytestmark = pytest.mark.integration
COPY = "tests.apps.eos_copy:app"
SUMMARY = re.compile(
    r"bounded run finished \((?P<reason>[a-z-]+)\): (?P<n_in>[\d,]+) records in, "
    r"(?P<n_out>[\d,]+) out"
)


def _inputs(ids: range) -> list[tuple[bytes, bytes]]:
    return [(str(i).encode(), json.dumps({"id": i}).encode()) for i in ids]


def _produce_in_transactions(bootstrap: str, topic: str, ids: range, abort_last: bool) -> None:
    """Committed transactions, then (optionally) an aborted one: the log ends in markers."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique_name("up")})
    producer.init_transactions(30)
    for chunk, aborted in ((ids, False), (range(10**6, 10**6 + 7), True)):
        if aborted and not abort_last:
            break
        producer.begin_transaction()
        for key, value in _inputs(chunk):
            producer.produce(topic, value, key)
        if aborted:
            producer.abort_transaction(30)
        else:
            producer.commit_transaction(30)


def _copied_ids(bootstrap: str, topic: str) -> Counter[int]:
    """How often each input id reached the output, checking both copies came together."""
    copies: dict[int, list[int]] = defaultdict(list)
    for r in read_committed(bootstrap, topic):
        value = json.loads(r.value)
        copies[value["id"]].append(value["copy"])
    assert all(sorted(c) == [0, 1] * (len(c) // 2) for c in copies.values()), "torn copies"
    return Counter({i: len(c) // 2 for i, c in copies.items()})


def _summary(w: WorkerProcess) -> dict[str, Any]:
    """The last summary: with --processes, each worker logs its own before the total."""
    matches = list(SUMMARY.finditer(w.log()))
    assert matches, w.log()[-3000:]
    last = matches[-1]
    return {
        "reason": last["reason"],
        "in": int(last["n_in"].replace(",", "")),
        "out": int(last["n_out"].replace(",", "")),
    }


def _with_input(bootstrap: str, prefix: str, partitions: int, records: int) -> AppTopics:
    names = app_topics(bootstrap, prefix, partitions)
    produce_records(bootstrap, names.src, _inputs(range(records)))
    return names


def _pausing_at(tmp: Path, at_id: int, batch_size: int) -> tuple[Path, dict[str, str]]:
    """The worker stops at input ``at_id`` until ``<dir>/release`` exists (tests/apps)."""
    pause = tmp / "pause"
    pause.mkdir()
    env = {"TEST_PAUSE_IDS": str(at_id), "TEST_PAUSE_DIR": str(pause)}
    return pause, {**env, "EOKAFKA_BATCH_SIZE": str(batch_size)}


def _bounded(
    bootstrap: str, tmp: Path, names: AppTopics, name: str, args: list[str], **env: str
) -> WorkerProcess:
    return worker(COPY, bootstrap, tmp, name, {**names.env, **env}, args)


@pytest.mark.parametrize("processes", [1, 2])
def test_until_end_processes_exactly_the_input_there_at_the_start(
    kafka_bootstrap: str, tmp_path: Path, processes: int
) -> None:
    names = _with_input(kafka_bootstrap, "ue", 3, 2_000)
    # A read_committed input whose log ends in a commit marker and an aborted transaction.
    _produce_in_transactions(kafka_bootstrap, names.src, range(2_000, 2_300), abort_last=True)
    args = ["--until-end", "--processes", str(processes)]
    run = _bounded(kafka_bootstrap, tmp_path, names, "run", args).start()
    try:
        assert run.wait(180) == 0, run.log()[-3000:]
    finally:
        run.stop_quietly()
    assert _copied_ids(kafka_bootstrap, names.out) == Counter(dict.fromkeys(range(2_300), 1))
    assert _summary(run) == {"reason": "end", "in": 2_300, "out": 4_600}


def test_records_produced_after_the_start_wait_for_the_next_run(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    names = _with_input(kafka_bootstrap, "late", 2, 500)
    # Small batches: the late records arrive in the same batch as the last ones in bounds.
    pause, env = _pausing_at(tmp_path, 250, batch_size=20)
    run = _bounded(kafka_bootstrap, tmp_path, names, "first", ["--until-end"], **env).start()
    try:
        wait_for(lambda: (pause / "paused-250").exists(), 120, "the run to reach id 250")
        produce_records(kafka_bootstrap, names.src, _inputs(range(500, 800)))
        assert run.alive, "the run ended before the late records were produced"
        (pause / "release").touch()
        assert run.wait(180) == 0, run.log()[-3000:]
        assert _copied_ids(kafka_bootstrap, names.out) == Counter(dict.fromkeys(range(500), 1))
        assert _summary(run)["in"] == 500
        again = _bounded(kafka_bootstrap, tmp_path, names, "second", ["--until-end"]).start()
        assert again.wait(180) == 0, again.log()[-3000:]
        assert _summary(again) == {"reason": "end", "in": 300, "out": 600}
        assert _copied_ids(kafka_bootstrap, names.out) == Counter(dict.fromkeys(range(800), 1))
    finally:
        run.stop_quietly()


def test_a_killed_bounded_run_restarted_finishes_without_duplicates(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    names = _with_input(kafka_bootstrap, "kill", 3, 3_000)
    # Small transactions, so that some commit before the kill and some are open at it.
    pause, env = _pausing_at(tmp_path, 1700, batch_size=50)
    env["EOKAFKA_COMMIT_EVERY"] = "50"
    run = _bounded(kafka_bootstrap, tmp_path, names, "run", ["--until-end"], **env)
    try:
        run.start()
        wait_for(lambda: (pause / "paused-1700").exists(), 120, "the run to reach id 1700")
        run.kill()  # mid-transaction: its open transaction must vanish
        done_before = sum(_copied_ids(kafka_bootstrap, names.out).values())
        assert 0 < done_before < 3_000
        run.start()  # the same command; the pause happens once, so it runs through
        assert run.wait(180) == 0, run.log()[-3000:]
    finally:
        run.stop_quietly()
    assert _copied_ids(kafka_bootstrap, names.out) == Counter(dict.fromkeys(range(3_000), 1))
    assert _summary(run)["in"] == 3_000 - done_before  # the restart did only what was left


def test_max_records_stops_after_exactly_that_many(kafka_bootstrap: str, tmp_path: Path) -> None:
    names = _with_input(kafka_bootstrap, "maxr", 2, 1_000)
    first = _bounded(kafka_bootstrap, tmp_path, names, "a", ["--max-records", "300"]).start()
    assert first.wait(180) == 0, first.log()[-3000:]
    assert _summary(first) == {"reason": "max-records", "in": 300, "out": 600}
    assert sum(_copied_ids(kafka_bootstrap, names.out).values()) == 300
    args = ["--max-records", "5000", "--until-end"]
    rest = _bounded(kafka_bootstrap, tmp_path, names, "b", args).start()
    assert rest.wait(180) == 0, rest.log()[-3000:]
    assert _summary(rest) == {"reason": "end", "in": 700, "out": 1_400}
    assert _copied_ids(kafka_bootstrap, names.out) == Counter(dict.fromkeys(range(1_000), 1))


def _positions(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    """Input id -> (partition, offset), as the input topic holds them."""
    records = read_committed(bootstrap, topic)
    return {json.loads(r.value)["id"]: (r.partition, r.offset) for r in records}


def test_max_seconds_commits_what_it_did_and_leaves_the_rest(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The bound's clock starts before the worker joins, so how far a run gets in S seconds
    depends on the machine; the outcome checked here does not. Whatever the run did is
    committed exactly once, as a prefix of each input partition, and the next run does the
    rest. The run is held mid-transaction at id 100 until its bound has passed, so the
    records of that open transaction are committed when the bound stops it (unless the
    machine was too slow to reach id 100 in time: then the bound stopped it before)."""
    seconds = 8
    names = _with_input(kafka_bootstrap, "maxs", 2, 1_000)
    where = _positions(kafka_bootstrap, names.src)
    pause, env = _pausing_at(tmp_path, 100, batch_size=20)
    args = ["--max-seconds", str(seconds), "--transaction-timeout-ms", "60000"]
    run = _bounded(kafka_bootstrap, tmp_path, names, "run", args, **env).start()
    marker = pause / "paused-100"
    try:
        wait_for(lambda: marker.exists() or not run.alive, 120, "id 100 or the end of the run")
        if marker.exists():  # the bound's clock started before the marker was written
            wait_for(lambda: time.time() > marker.stat().st_mtime + seconds + 0.5,
                     seconds + 5, "the run's --max-seconds to pass")  # fmt: skip
        (pause / "release").touch()
        assert run.wait(120) == 0, run.log()[-3000:]
    finally:
        run.stop_quietly()
    first = _summary(run)
    assert first["reason"] == "max-seconds", first
    done = _copied_ids(kafka_bootstrap, names.out)
    assert set(done.values()) <= {1}, "an input copied twice"
    assert first["in"] == len(done) < 1_000, (first, len(done))
    if marker.exists():
        assert 100 in done, "the open transaction's records were not committed at the bound"
    for p in (0, 1):
        offsets = sorted(o for i, (q, o) in where.items() if q == p and i in done)
        assert offsets == list(range(len(offsets))), f"partition {p}: not a prefix: {offsets}"
    rest = _bounded(kafka_bootstrap, tmp_path, names, "rest", ["--until-end"]).start()
    try:
        assert rest.wait(180) == 0, rest.log()[-3000:]
    finally:
        rest.stop_quietly()
    left = 1_000 - len(done)
    assert _summary(rest) == {"reason": "end", "in": left, "out": 2 * left}
    assert _copied_ids(kafka_bootstrap, names.out) == Counter(dict.fromkeys(range(1_000), 1))


def test_until_end_through_a_repartition_on_two_processes(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rng = random.Random(3)
    words = "the cat sat on mat and dog ran far away quick brown fox jumps".split()
    sentences = [" ".join(rng.choices(words, k=rng.randint(1, 8))) for _ in range(1_500)]
    expected = Counter(w for s in sentences for w in s.split() if len(w) > 2)
    names = app_topics(kafka_bootstrap, "bwc", 4)
    inputs = [(f"s{i}".encode(), s.encode()) for i, s in enumerate(sentences)]
    produce_records(kafka_bootstrap, names.src, inputs)
    args = ["--until-end", "--processes", "2"]
    run = worker("tests.apps.dsl_apps:wordcount", kafka_bootstrap, tmp_path, "wc", names.env, args)
    try:
        assert run.start().wait(240) == 0, run.log()[-3000:]
    finally:
        run.stop_quietly()
    counts: dict[str, list[int]] = defaultdict(list)
    for r in read_committed(kafka_bootstrap, names.out):
        counts[r.key.decode()].append(json.loads(r.value))
    assert {w: c[-1] for w, c in counts.items()} == expected
    assert all(c == list(range(1, len(c) + 1)) for c in counts.values())
    assert _summary(run) == {"reason": "end", "in": 1_500, "out": sum(expected.values())}


def test_a_signal_before_the_end_commits_and_exits_3(kafka_bootstrap: str, tmp_path: Path) -> None:
    names = _with_input(kafka_bootstrap, "sig", 2, 1_000)
    pause, env = _pausing_at(tmp_path, 600, batch_size=50)
    run = _bounded(kafka_bootstrap, tmp_path, names, "run", ["--until-end"], **env).start()
    try:
        wait_for(lambda: (pause / "paused-600").exists(), 120, "the run to reach id 600")
        assert run.proc is not None
        run.proc.terminate()  # handled once the processor returns
        (pause / "release").touch()
        assert run.wait(120) == 3, run.log()[-3000:]
    finally:
        run.stop_quietly()
    assert "stopped by a signal before reaching its bound" in run.log()
    done = _copied_ids(kafka_bootstrap, names.out)
    assert set(done.values()) == {1} and 600 in done and len(done) < 1_000
    run.start()  # the same command again finishes the work
    assert run.wait(120) == 0, run.log()[-3000:]
    assert _copied_ids(kafka_bootstrap, names.out) == Counter(dict.fromkeys(range(1_000), 1))
