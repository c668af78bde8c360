"""The file sink under zombies and neighbours, on real worker processes.

A zombie: a worker stopped (SIGSTOP) at an exact step of a transaction, a successor with the
same instance id started, allowed to recover the zombie's parts and to finish the input,
then the zombie resumed (SIGCONT). Whatever the zombie does after that, readers (the finished
files) must hold every input exactly once, each row in the part its name says.

Neighbours: two applications reading the same topic into one folder. Each must find every
input exactly once in its own finished parts, whatever the other does (a crash and recovery
included).
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.connectors.pg_helpers import inputs
from tests.integration.connectors.test_file_sink import group_caught_up
from tests.integration.harness import WorkerProcess, app_topics, wait_for, worker
from tests.kafka_helpers import produce_records, read_committed, unique_name

pytestmark = pytest.mark.integration
TARGET = "tests.apps.file_sink:app"
LIVENESS = 180  # generous bound for a loaded 2-core machine


def _stopped(pid: int) -> bool:
    """Whether the process is stopped by a signal (state T in /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


def finished_rows(directory: Path, prefix: str = "") -> list[tuple[str, dict]]:
    """(file name, row) of every finished part, checking that each row is in its own part."""
    out = []
    for path in sorted(directory.glob(f"{prefix}*.jsonl")):
        text = path.read_text()
        assert text.endswith("\n"), f"{path.name} ends in a partial record"
        stem = path.name[: -len(".jsonl")]
        *_, partition, span = stem.split("+")
        first, end = (int(x) for x in span.split("-"))
        for line in text.splitlines():
            row = json.loads(line)
            p, offset = (int(x) for x in row["src"].split(":"))
            assert p == int(partition) and first <= offset < end, (
                f"{path.name} holds the row of input {row['src']}, outside its range"
            )
            out.append((path.name, row))
    return out


def assert_exactly_once(rows: list[tuple[str, dict]], total: int) -> None:
    ids = Counter(row["id"] for _, row in rows)
    dupes = sorted(i for i, c in ids.items() if c > 1)
    missing = [i for i in range(total) if i not in ids]
    where = {i: [name for name, row in rows if row["id"] == i] for i in dupes[:3]}
    assert not dupes, f"{len(dupes)} inputs in finished parts twice, e.g. {where}"
    assert not missing, f"{len(missing)} inputs missing from finished parts, e.g. {missing[:5]}"


@pytest.mark.parametrize(
    ("point", "turn"),
    [
        ("files.before-append", 3),  # the part open, the transaction's rows not written
        ("files.after-fsync", 3),  # rows written, no mark yet
        ("files.after-prepare", 3),  # prepared, before the Kafka commit
        ("files.before-done", 3),  # Kafka committed, not marked done
        ("files.before-rename", 1),  # finishing a part after its commit
    ],
)
def test_a_resumed_zombie_never_writes_where_readers_look(
    kafka_bootstrap: str, tmp_path: Path, point: str, turn: int
) -> None:
    total = 3_000
    names = app_topics(kafka_bootstrap, "fzomb", partitions=2)
    out_dir = tmp_path / "out"
    env = {
        **names.env,
        "TEST_FILES_DIR": str(out_dir),
        "EOKAFKA_COMMIT_EVERY": "150",
        "EOKAFKA_BATCH_SIZE": "50",
        "TEST_ROLL_BYTES": "30000",  # a part spans several transactions
    }
    flag = tmp_path / "paused"
    produce_records(kafka_bootstrap, names.src, inputs(range(total)))
    zombie_env = {
        **env,
        "EOKAFKA_TEST_CRASH_AT": f"{point}:{turn}",  # stop there (a GC or VM pause)
        "EOKAFKA_TEST_CRASH_FLAG": str(flag),
        "EOKAFKA_TEST_CRASH_SIGNAL": "STOP",
    }
    zombie = worker(TARGET, kafka_bootstrap, tmp_path, "zombie", zombie_env,
                    ["--instance-id", "a"]).start()  # fmt: skip
    successor: WorkerProcess | None = None
    try:
        wait_for(lambda: flag.exists() or not zombie.alive, LIVENESS, f"the pause at {point}")
        assert zombie.alive, zombie.log()[-3000:]
        assert zombie.proc is not None
        wait_for(lambda: _stopped(zombie.proc.pid), LIVENESS, "the zombie to stop")
        successor = worker(TARGET, kafka_bootstrap, tmp_path, "successor", env,
                           ["--instance-id", "a"]).start()  # fmt: skip
        caught_up = lambda: group_caught_up(kafka_bootstrap, names.app_id, names.src)  # noqa: E731
        wait_for(lambda: caught_up() or not successor.alive, LIVENESS,
                 "the successor to finish the input", interval=0.5)  # fmt: skip
        assert successor.alive, successor.log()[-3000:]
        seen = {p.name: p.read_bytes() for p in out_dir.glob("*.jsonl")}
        zombie.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: not zombie.alive, LIVENESS, "the zombie to find it was replaced")
        assert successor.alive, successor.log()[-3000:]
        changed = [n for n, data in seen.items() if (out_dir / n).read_bytes() != data]
        assert not changed, f"finished parts changed after the zombie resumed: {changed}"
        assert successor.terminate() == 0, successor.log()[-3000:]
        # A restart recovers whatever the zombie left in progress after the successor's
        # last recovery (invisible to readers meanwhile).
        successor.start()
        wait_for(lambda: "assigned " in successor.logs[-1].read_text() or not successor.alive,
                 LIVENESS, "the restart to be assigned")  # fmt: skip
        wait_for(lambda: not any((out_dir / ".inprogress").iterdir()) or not successor.alive,
                 LIVENESS, "the restart to recover the zombie's leftovers")  # fmt: skip
        assert successor.terminate() == 0, successor.log()[-3000:]
        assert_exactly_once(finished_rows(out_dir), total)
        assert not list((out_dir / ".inprogress").iterdir())
        assert len(read_committed(kafka_bootstrap, names.out, expected_count=total)) == total
    finally:
        if zombie.alive and zombie.proc is not None:
            zombie.proc.send_signal(signal.SIGCONT)
        zombie.stop_quietly()
        if successor is not None:
            successor.stop_quietly()


def test_two_apps_sharing_a_folder_keep_to_their_own_parts(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Both apps read one topic (the same part names but for the application id); app A is
    SIGKILLed mid-transaction and recovers while B writes."""
    total = 4_000
    names = app_topics(kafka_bootstrap, "fshare", partitions=2)
    out_dir = tmp_path / "out"
    produce_records(kafka_bootstrap, names.src, inputs(range(total)))
    apps = {"A": unique_name("fshare-a"), "B": unique_name("fshare-b")}
    base = {
        "TEST_INPUT": names.src,
        "TEST_FILES_DIR": str(out_dir),
        "EOKAFKA_COMMIT_EVERY": "200",
        "EOKAFKA_BATCH_SIZE": "100",
        "TEST_ROLL_BYTES": "8000",
    }
    a = worker(TARGET, kafka_bootstrap, tmp_path, "a", {
        **base, "TEST_APP_ID": apps["A"],
        "EOKAFKA_TEST_CRASH_AT": "files.after-prepare:4",
        "EOKAFKA_TEST_CRASH_FLAG": str(tmp_path / "crashed"),
    }, ["--instance-id", "w"])  # fmt: skip
    b = worker(TARGET, kafka_bootstrap, tmp_path, "b", {**base, "TEST_APP_ID": apps["B"]},
               ["--instance-id", "w"])  # fmt: skip
    try:
        a.start()
        b.start()
        wait_for(lambda: not a.alive, LIVENESS, "app A's crash point")
        assert (tmp_path / "crashed").exists(), a.log()[-3000:]
        a.start()
        for app_id in apps.values():
            wait_for(lambda app_id=app_id: group_caught_up(kafka_bootstrap, app_id, names.src),
                     LIVENESS, f"{app_id} to catch up", interval=0.5)  # fmt: skip
        assert a.terminate() == 0, a.log()[-3000:]
        assert b.terminate() == 0, b.log()[-3000:]
        everything = finished_rows(out_dir)
        for app_id in apps.values():
            assert_exactly_once([r for r in everything if r[1]["app"] == app_id], total)
        for app_id in apps.values():
            own = finished_rows(out_dir, app_id + "+")
            assert {r[1]["app"] for r in own} == {app_id}, f"parts named for {app_id}"
            assert len(own) == total, f"{len(own)} rows in parts named for {app_id}"
        assert not list((out_dir / ".inprogress").iterdir())
        assert not [p for p in os.listdir(out_dir) if p.endswith(".tmp")]
    finally:
        a.stop_quietly()
        b.stop_quietly()
