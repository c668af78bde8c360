"""Exactly-once under SIGKILL, zombie fencing and graceful shutdown, on a real broker.

Workers are real ``eokafka run`` processes. The test app stops mid-transaction at chosen ids
(tests/apps/eos_copy.py); before a kill the test waits until that transaction's output so far
is on the broker, so the kill leaves it there, open. A read_committed reader must then find
every input exactly once, and none of the killed transactions' outputs.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.integration.harness import WorkerProcess, app_topics, wait_for, worker
from tests.integration.membership import group_offsets
from tests.kafka_helpers import end_offsets, produce_records, read_committed, read_uncommitted

pytestmark = pytest.mark.integration
TARGET = "tests.apps.eos_copy:app"


def _inputs(ids: range) -> list[tuple[bytes, bytes]]:
    return [(str(n).encode(), json.dumps({"id": n, "pad": "x" * 40}).encode()) for n in ids]


def _assert_exactly_once(records: list, ids: range) -> None:
    seen = Counter((json.loads(r.value)["id"], json.loads(r.value)["copy"]) for r in records)
    dupes = [k for k, c in seen.items() if c > 1]
    missing = [(n, c) for n in ids for c in (0, 1) if (n, c) not in seen]
    extra = [k for k in seen if k[0] not in ids]
    assert not dupes, f"{len(dupes)} outputs duplicated, e.g. {dupes[:5]}"
    assert not missing, f"{len(missing)} outputs missing, e.g. {missing[:5]}"
    assert not extra, f"unexpected outputs {extra[:5]}"


def _members(bootstrap: str, group: str) -> list[object]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return list(admin.describe_consumer_groups([group])[group].result(30).members)


def _setup(bootstrap: str, tmp: Path, partitions: int) -> tuple[dict[str, str], str, str]:
    names = app_topics(bootstrap, "eos", partitions)
    pause_dir = tmp / "pause"
    pause_dir.mkdir()
    return {**names.env, "TEST_PAUSE_DIR": str(pause_dir)}, names.src, names.out


def _pausing_worker(
    bootstrap: str, tmp: Path, total: int, pause_id: int, extra: list[str]
) -> tuple[WorkerProcess, str, Path]:
    """One worker over 2 partitions of ``total`` inputs that stops mid-transaction at
    ``pause_id`` until the test releases it; returns it, the output topic, the pause dir."""
    env, src, out = _setup(bootstrap, tmp, partitions=2)
    env["TEST_PAUSE_IDS"] = str(pause_id)
    produce_records(bootstrap, src, _inputs(range(total)))
    w = worker(TARGET, bootstrap, tmp, "w", env, extra).start()
    return w, out, Path(env["TEST_PAUSE_DIR"])


def _open_transaction(
    bootstrap: str, topic: str, group: str, pause_dir: Path, n: int, n_at: str
) -> set[tuple[str, int]]:
    """The outputs ``(src, copy)`` the transaction paused at input ``n`` (at ``n_at``) has
    produced: those of the records its process handled past the group's committed offsets,
    less ``n``'s own (a processor's sends are produced only once it returns)."""
    last = json.loads((pause_dir / f"positions-{n}.json").read_text())
    committed = group_offsets(bootstrap, group, topic)
    return {
        (f"{p}:{o}", c)
        for p, end in last.items()
        for o in range(max(committed.get(int(p), 0), 0), end + 1)
        for c in (0, 1)
        if f"{p}:{o}" != n_at
    }


def _outputs_of(records: list, pid: int) -> set[tuple[str, int]]:
    values = (json.loads(r.value) for r in records)
    return {(v["src"], v["copy"]) for v in values if v["pid"] == pid}


def test_sigkill_mid_transaction_loses_and_duplicates_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    total = 50_000
    pause_ids = [7_000, 21_000, 36_000]
    env, src, out = _setup(kafka_bootstrap, tmp_path, partitions=4)
    env["TEST_PAUSE_IDS"] = ",".join(map(str, pause_ids))
    pause_dir = Path(env["TEST_PAUSE_DIR"])
    produce_records(kafka_bootstrap, src, _inputs(range(total)))
    where = {json.loads(r.value)["id"]: f"{r.partition}:{r.offset}"
             for r in read_committed(kafka_bootstrap, src)}  # fmt: skip
    workers = {
        name: worker(TARGET, kafka_bootstrap, tmp_path, name, env, ["--instance-id", name]).start()
        for name in ("w0", "w1")
    }
    killed: dict[int, set[tuple[str, int]]] = {}  # pid -> its open transaction's outputs
    handled: set[str] = set()

    def next_pause() -> Path | None:
        fresh = [p for p in pause_dir.glob("paused-*") if p.name not in handled]
        return next((p for p in fresh if p.read_text()), None)

    try:
        # Pauses come in any order (partitions advance independently); kill whoever paused.
        while len(handled) < len(pause_ids):
            wait_for(lambda: next_pause() is not None, 120, f"pause {len(handled) + 1}")
            marker = next_pause()
            assert marker is not None
            handled.add(marker.name)
            n, pid = int(marker.name.split("-")[1]), int(marker.read_text())
            victim = next(w for w in workers.values() if w.proc and w.proc.pid == pid)
            held = _open_transaction(
                kafka_bootstrap, src, env["TEST_APP_ID"], pause_dir, n, where[n]
            )

            def on_broker(held: set = held, pid: int = pid) -> bool:
                return held <= _outputs_of(read_uncommitted(kafka_bootstrap, out), pid)

            wait_for(on_broker, 120, f"the output of the transaction paused at {n} on the broker")
            print(f"\nkill at id {n}: {len(held) // 2} records' outputs open on the broker")
            victim.kill()  # SIGKILL while that transaction is open
            killed[pid] = held
            victim.start()  # same instance id: fences the dead one's transaction at once
        records = read_committed(kafka_bootstrap, out, expected_count=2 * total, timeout=180)
        _assert_exactly_once(records, range(total))
        uncommitted = sum(end_offsets(kafka_bootstrap, out, "uncommitted").values())
        committed = sum(end_offsets(kafka_bootstrap, out, "committed").values())
        assert committed == uncommitted, "an open transaction is left after the run"
        # The killed transactions' output stays in the log but is never read.
        assert any(killed.values()), "no kill landed on a transaction with output"
        read = {pid: _outputs_of(records, pid) for pid in killed}
        leaked = {pid: sorted(held & read[pid])[:5] for pid, held in killed.items()}
        assert not any(leaked.values()), f"killed transactions' outputs read: {leaked}"
        for w in workers.values():
            assert w.terminate() == 0, w.log()[-3000:]
    finally:
        for w in workers.values():
            w.stop_quietly()


def test_zombie_is_fenced_by_a_worker_with_the_same_instance_id(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    total = 4_000
    env, src, out = _setup(kafka_bootstrap, tmp_path, partitions=2)
    env["TEST_PAUSE_IDS"] = "1500"
    pause_dir = Path(env["TEST_PAUSE_DIR"])
    produce_records(kafka_bootstrap, src, _inputs(range(total)))
    extra = ["--instance-id", "same"]
    zombie = worker(TARGET, kafka_bootstrap, tmp_path, "zombie", env, extra).start()
    successor: WorkerProcess | None = None
    try:
        wait_for(lambda: (pause_dir / "paused-1500").exists(), 120, "the zombie to pause")
        successor = worker(TARGET, kafka_bootstrap, tmp_path, "successor", env, extra).start()
        records = read_committed(kafka_bootstrap, out, expected_count=2 * total, timeout=120)
        (pause_dir / "release").touch()  # the zombie wakes up inside its fenced transaction
        code = zombie.wait(60)
        assert code != 0
        assert "fenced" in zombie.log().lower(), zombie.log()[-3000:]
        assert successor.alive, successor.log()[-3000:]
        records = read_committed(kafka_bootstrap, out, timeout=60)
        _assert_exactly_once(records, range(total))
        assert successor.terminate() == 0
    finally:
        zombie.stop_quietly()
        if successor is not None:
            successor.stop_quietly()


def test_sigterm_commits_and_leaves_no_open_transaction(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env, src, out = _setup(kafka_bootstrap, tmp_path, partitions=3)
    first, second = range(0, 20_000), range(20_000, 30_000)
    produce_records(kafka_bootstrap, src, _inputs(first))
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, ["--instance-id", "t"]).start()
    feeder = threading.Thread(target=produce_records, args=(kafka_bootstrap, src, _inputs(second)))
    try:
        wait_for(lambda: sum(end_offsets(kafka_bootstrap, out).values()) > 0, 60, "output")
        feeder.start()  # SIGTERM lands while input still streams in
        assert w.terminate(timeout=20) == 0, w.log()[-3000:]
        feeder.join(60)
        committed = end_offsets(kafka_bootstrap, out, "committed")
        assert committed == end_offsets(kafka_bootstrap, out, "uncommitted")
        partial = read_committed(kafka_bootstrap, out)
        assert 0 < len(partial) < 2 * 30_000
        w.start()  # the rest, exactly once, from the offsets the shutdown committed
        records = read_committed(kafka_bootstrap, out, expected_count=2 * 30_000, timeout=120)
        _assert_exactly_once(records, range(30_000))
        assert w.terminate(timeout=20) == 0
    finally:
        w.stop_quietly()


def test_lost_partitions_abort_the_open_transaction_and_stay_exactly_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The worker stalls mid-transaction past max.poll.interval.ms and the group drops it.
    When it wakes, no commit is due yet (a 60 s commit interval; the transaction timeout, a
    liveness bound, is longer still), so what ends the transaction is its partitions found
    lost: the lost callback aborts it. A worker with the default settings then finishes the
    input, and every input is output exactly once."""
    total = 3_000
    member = ["--instance-id", "slow", "-c", "consumer.max.poll.interval.ms=6000"]
    member += ["-c", "consumer.session.timeout.ms=6000"]  # the broker's minimum
    slow = [*member, "--commit-interval-ms", "60000", "--transaction-timeout-ms", "120000"]
    w, out, pause_dir = _pausing_worker(kafka_bootstrap, tmp_path, total, 1000, slow)
    rest = worker(TARGET, kafka_bootstrap, tmp_path, "rest", w.env, member)
    try:
        wait_for(lambda: (pause_dir / "paused-1000").exists(), 60, "the worker to pause")
        # librdkafka declares the assignment lost once the poll interval is exceeded, and
        # leaves the group (its log line shows only once the worker polls again).
        group = w.env["TEST_APP_ID"]
        wait_for(
            lambda: not _members(kafka_bootstrap, group), 60, "max.poll.interval.ms to be exceeded"
        )
        (pause_dir / "release").touch()
        rejoined = lambda: "eokafka.worker: assigned" in w.log().partition("MAXPOLL")[2]  # noqa: E731
        wait_for(lambda: rejoined() or not w.alive, 60, "rejoin")
        log = w.log()  # the lost callback came before the new assignment
        assert "transaction aborted (partitions-lost)" in log, log[-3000:]
        assert w.terminate() == 0, w.log()[-3000:]  # commits what it did since, and leaves
        rest.start()
        records = read_committed(kafka_bootstrap, out, expected_count=2 * total, timeout=120)
        _assert_exactly_once(records, range(total))
        assert rest.terminate() == 0, rest.log()[-3000:]
    finally:
        w.stop_quietly()
        rest.stop_quietly()


def test_a_transaction_that_outlives_its_timeout_goes_on_with_a_new_producer(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The broker aborts it and fences the producer; nobody else holds the instance id, so the
    worker makes a new producer, replays, and stays exactly once."""
    total = 3_000
    extra = ["--instance-id", "slow-txn", "--transaction-timeout-ms", "2000"]
    extra += ["--commit-interval-ms", "1000"]  # the ids before 1000 share its transaction
    w, out, pause_dir = _pausing_worker(kafka_bootstrap, tmp_path, total, 1000, extra)

    def open_transaction() -> bool:
        committed = end_offsets(kafka_bootstrap, out, "committed")
        return committed != end_offsets(kafka_bootstrap, out, "uncommitted")

    try:
        wait_for(lambda: (pause_dir / "paused-1000").exists(), 60, "the worker to pause")
        wait_for(open_transaction, 30, "the paused transaction's output on the broker")
        wait_for(lambda: not open_transaction(), 60, "the broker to abort the transaction")
        (pause_dir / "release").touch()  # the worker wakes up with a fenced producer
        records = read_committed(kafka_bootstrap, out, expected_count=2 * total, timeout=120)
        _assert_exactly_once(records, range(total))
        log = w.log()
        assert "longer than transaction_timeout_ms=2000" in log, log[-3000:]
        assert "creating a new producer" in log, log[-3000:]
        assert w.alive, log[-3000:]
        assert w.terminate() == 0
    finally:
        w.stop_quietly()
