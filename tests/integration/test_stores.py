"""State stores on changelogs: exact running totals through SIGKILL, aborts and restores."""

from __future__ import annotations

import json
import random
import shutil
import threading
from pathlib import Path

import pytest

from tests.integration.harness import app_topics, wait_for, worker
from tests.integration.test_operations import _free_port, _samples
from tests.kafka_helpers import end_offsets, produce_records, read_committed
from tests.totals_reference import check_running_totals

pytestmark = pytest.mark.integration
TARGET = "tests.apps.totals:app"
KEYS = [f"k{i}" for i in range(40)]


def _inputs(ids: range, seed: int = 1) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    return [
        (rng.choice(KEYS).encode(), json.dumps({"id": n, "amount": rng.randint(1, 9)}).encode())
        for n in ids
    ]


@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
def test_running_totals_stay_exact_through_sigkill(
    kafka_bootstrap: str, tmp_path: Path, backend: str
) -> None:
    total = 20_000
    names = app_topics(kafka_bootstrap, "tot", 4)
    pause_dir = tmp_path / "pause"
    pause_dir.mkdir()
    env = {**names.env, "TEST_BACKEND": backend, "TEST_PAUSE_DIR": str(pause_dir)}
    env["TEST_PAUSE_IDS"] = "3000,9000,15000"
    inputs = _inputs(range(total))
    produce_records(kafka_bootstrap, names.src, inputs)
    workers = [
        worker(TARGET, kafka_bootstrap, tmp_path, f"w{i}", env, ["--instance-id", f"w{i}"])
        for i in range(2)
    ]
    for w in workers:
        w.start()
    handled: set[str] = set()
    try:
        while len(handled) < 3:
            wait_for(
                lambda: any(p.name not in handled for p in pause_dir.glob("paused-*")),
                120,
                "a pause",
            )
            marker = next(p for p in pause_dir.glob("paused-*") if p.name not in handled)
            wait_for(lambda m=marker: m.read_text() != "", 10, "pid")
            handled.add(marker.name)
            victim = next(w for w in workers if w.proc and w.proc.pid == int(marker.read_text()))
            victim.kill()
            victim.start()
        records = read_committed(kafka_bootstrap, names.out, expected_count=total, timeout=180)
        check_running_totals(inputs, records)
        for w in workers:
            assert w.terminate() == 0, w.log()[-3000:]
    finally:
        for w in workers:
            w.stop_quietly()


def _restored(log: str) -> int:
    """Records the last start of a worker restored into totals[0], from its log line
    (0 when the store was up to date and read nothing)."""
    lines = [
        x
        for x in log.splitlines()
        if "restored store totals[0]:" in x or "store totals[0] is up to date" in x
    ]
    if "is up to date" in lines[-1]:
        return 0
    return int(lines[-1].split("restored store totals[0]:")[1].split()[0])


def test_abort_leaves_no_trace_and_restarts_restore_only_the_tail(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    names = app_topics(kafka_bootstrap, "tail", 1)
    changelog = f"{names.app_id}-totals-changelog"
    stores = tmp_path / "state" / names.app_id / "stores"
    env = {**names.env, "TEST_BACKEND": "rocksdb"}
    first = _inputs(range(0, 500))
    # Record 250 raises after writing its store: the transaction is aborted and replayed
    # without it, so its amount must not count (skip policy) and nothing is restored.
    first[250] = (first[250][0], json.dumps({"id": 250, "amount": 1000, "poison": True}).encode())
    produce_records(kafka_bootstrap, names.src, first)
    w = worker(
        TARGET, kafka_bootstrap, tmp_path, "w", env, ["--instance-id", "t", "--on-error", "skip"]
    )
    try:
        w.start()
        kept = first[:250] + first[251:]
        check_running_totals(kept, read_committed(kafka_bootstrap, names.out, expected_count=499))
        assert "restoring store" not in w.log()  # the abort dropped the overlay: no restore
        assert "skipped poison record" in w.log()
        assert w.terminate() == 0
        snapshot = tmp_path / "snapshot"
        shutil.copytree(stores, snapshot)
        cl1 = len(read_committed(kafka_bootstrap, changelog))

        # A restart after a clean stop restores only the (empty) tail.
        second = _inputs(range(500, 800), seed=2)
        produce_records(kafka_bootstrap, names.src, second)
        w.start()
        got = read_committed(kafka_bootstrap, names.out, expected_count=799)
        check_running_totals(kept + second, got)
        assert _restored(w.log()) == 0
        # Up to date after a clean stop: read nothing, not even the commit marker.
        restarted = w.logs[-1].read_text()
        assert "store totals[0] is up to date" in restarted
        assert "restoring store" not in restarted
        assert w.terminate() == 0
        cl2 = len(read_committed(kafka_bootstrap, changelog))
        assert cl2 > cl1

        # A store left behind (the snapshot) restores exactly the changelog records since.
        shutil.rmtree(stores)
        shutil.copytree(snapshot, stores)
        third = _inputs(range(800, 900), seed=3)
        produce_records(kafka_bootstrap, names.src, third)
        w.start()
        got = read_committed(kafka_bootstrap, names.out, expected_count=899)
        check_running_totals(kept + second + third, got)
        assert _restored(w.log()) == cl2 - cl1
        assert w.terminate() == 0

        # A lost state directory restores in full: one input for every key then shows each
        # key's restored total in its output.
        cl3 = len(read_committed(kafka_bootstrap, changelog))
        shutil.rmtree(stores)
        fourth = [(k.encode(), json.dumps({"id": 900 + i, "amount": 1}).encode())
                  for i, k in enumerate(KEYS)]  # fmt: skip
        produce_records(kafka_bootstrap, names.src, fourth)
        w.start()
        got = read_committed(kafka_bootstrap, names.out, expected_count=899 + len(KEYS))
        check_running_totals(kept + second + third + fourth, got)
        assert _restored(w.log()) == cl3
        assert w.terminate() == 0
    finally:
        w.stop_quietly()


def _changelog_state(bootstrap: str, topic: str) -> dict[str, int]:
    """The store contents a full restore would rebuild: the last value per key."""
    state: dict[str, int] = {}
    for r in read_committed(bootstrap, topic):
        key = json.loads(r.key)
        if r.value is None:
            state.pop(key, None)
        else:
            state[key] = json.loads(r.value)
    return state


def test_scale_out_and_in_under_sigkill_keeps_totals_exact(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    total = 30_000
    names = app_topics(kafka_bootstrap, "scale", 6)
    pause_dir = tmp_path / "pause"
    pause_dir.mkdir()
    env = {**names.env, "TEST_PAUSE_DIR": str(pause_dir), "TEST_PAUSE_IDS": "9000,15000,21000"}
    inputs = _inputs(range(total), seed=5)
    feeder = threading.Thread(
        target=lambda: [
            produce_records(kafka_bootstrap, names.src, inputs[i : i + 1_000])
            for i in range(0, total, 1_000)
        ]
    )
    ports = [_free_port() for _ in range(3)]
    workers = [
        worker(
            TARGET,
            kafka_bootstrap,
            tmp_path,
            f"w{i}",
            env,
            [
                "--instance-id",
                f"w{i}",
                "--metrics-port",
                str(ports[i]),
                "-c",
                "consumer.session.timeout.ms=6000",
            ],
        )  # fmt: skip
        for i in range(3)
    ]
    out_count = lambda: sum(end_offsets(kafka_bootstrap, names.out).values())  # noqa: E731
    handled: set[str] = set()

    def kill_paused() -> None:
        for marker in pause_dir.glob("paused-*"):
            if marker.name in handled or not marker.read_text():
                continue
            handled.add(marker.name)
            victim = next(w for w in workers if w.proc and w.proc.pid == int(marker.read_text()))
            victim.kill()
            victim.start()

    try:
        workers[0].start()  # 1 worker
        feeder.start()
        wait_for(lambda: out_count() > 3_000, 120, "the single worker's output")
        workers[1].start()  # -> 3 workers: partitions move, their stores restore
        workers[2].start()
        while len(handled) < 3:
            wait_for(
                lambda: any(
                    m.name not in handled and m.read_text() for m in pause_dir.glob("paused-*")
                ),
                120,
                "a pause",
            )
            kill_paused()
        feeder.join(120)
        restored = sum(
            v
            for p in ports[1:]
            for k, v in _samples(p).items()
            if k[0] == "eokafka_records_restored_total"
        )
        assert restored > 0, "no store was restored when partitions moved"
        assert any(k[0] == "eokafka_store_keys" for k in _samples(ports[1]) | _samples(ports[2]))
        for w in workers[1:]:  # -> 1 worker again
            assert w.terminate() == 0, w.log()[-3000:]
        records = read_committed(kafka_bootstrap, names.out, expected_count=total, timeout=180)
        final = check_running_totals(inputs, records)
        changelog = f"{names.app_id}-totals-changelog"
        wait_for(lambda: _changelog_state(kafka_bootstrap, changelog) == final, 60, "store state")
        assert workers[0].terminate() == 0, workers[0].log()[-3000:]
    finally:
        for w in workers:
            w.stop_quietly()
