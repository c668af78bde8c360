"""``eokafka verify --repair`` while the sync runs, and a SIGKILL of its worker mid-repair.

A real worker syncs a source to a PostgreSQL table, a folder of FileSink parts or a compacted
Kafka topic. Once it has committed a first batch, defects are planted below its committed
offsets (ids deleted or never copied, a duplicate, an altered value, a record without an id),
a second batch goes in, and the repair runs with the sink's group while the worker writes it.
The worker is SIGKILLed at the repair's first change, then restarted. Afterwards every input
must be at the destination exactly once with its value, as a plain computation over the
inputs says, and verify must say OK.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import psycopg
import pytest

from eokafka.sink import Sink
from eokafka.verify import CheckOptions, verify
from eokafka.verify.line import NotNow
from eokafka.verify.progress import NO_PROGRESS, Step
from eokafka.verify.repair import Repaired, RepairOptions, repair
from tests.integration.connectors.pg_helpers import (
    assert_rows_exactly_once,
    inputs,
    new_table,
    prepared,
    rows,
)
from tests.integration.connectors.test_file_sink import group_caught_up
from tests.integration.harness import (
    REPO,
    AppTopics,
    WorkerProcess,
    app_topics,
    wait_for,
    worker,
)
from tests.kafka_helpers import create_topic, produce_records, read_committed

pytestmark = pytest.mark.integration
FIRST, SECOND = range(300), range(300, 600)
LIVENESS = 180  # seconds: a generous bound on a loaded machine, not a timing assertion


class _KillAtFirstChange:
    """A progress step that SIGKILLs the worker when the repair has made its first change."""

    def __init__(self, w: WorkerProcess) -> None:
        self.w = w
        self.killed = False

    def advance(self, n: int = 1) -> None:
        if not self.killed:
            self.w.kill()
            self.killed = True

    def finish(self) -> None:
        return None


class KillDuringRepair:
    """Progress that kills the worker during the repair's changes (and reports nothing)."""

    def __init__(self, w: WorkerProcess) -> None:
        self.kill = _KillAtFirstChange(w)

    def step(self, what: str, total: int | None) -> Step:
        return self.kill if what.startswith("repairing") else NO_PROGRESS.step(what, total)


def _sinks(module: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Sink]:
    """The test app's sinks, as the worker configured by ``env`` has them."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    app_module: ModuleType = importlib.reload(importlib.import_module(module))
    return dict(app_module.app.topology.sinks)


def _ids(repaired: Repaired, action: str) -> Counter[str | None]:
    return Counter(i.id for i in repaired.plan.of(action))  # type: ignore[arg-type]


def _assert_planted_plan(repaired: Repaired) -> None:
    assert _ids(repaired, "add") == Counter({"5": 1, "6": 1})
    assert _ids(repaired, "remove") == Counter({"7": 1, None: 1})
    assert _ids(repaired, "fix") == Counter({"8": 1})
    assert repaired.plan.of("leave") == []
    assert repaired.done is not None and repaired.done.added == 2


def _repair_killing(w: WorkerProcess, opts: CheckOptions, sinks: dict[str, Sink]) -> Repaired:
    progress = KillDuringRepair(w)
    repaired = repair(opts, RepairOptions(apply=True, delete_unkeyed=True), sinks, progress)
    assert progress.kill.killed, "the repair made no change"
    return repaired


def _restart(w: WorkerProcess, bootstrap: str, group: str, topic: str) -> None:
    """Start the killed worker again; wait until it runs and has caught up."""
    w.start()
    wait_for(lambda: "assigned" in w.logs[-1].read_text(errors="replace"), LIVENESS,
             "the restarted worker to take its partitions")
    wait_for(lambda: group_caught_up(bootstrap, group, topic), LIVENESS,
             "the restarted worker to catch up")


def _synced(bootstrap: str, tmp_path: Path, target: str, names: AppTopics, env: dict[str, str],
            first: list[tuple[bytes, bytes]], started: list[WorkerProcess]) -> WorkerProcess:
    """A worker of ``target`` that has committed the first batch of input."""
    produce_records(bootstrap, names.src, first)
    w = worker(target, bootstrap, tmp_path, "w", env, ["--instance-id", "a"]).start()
    started.append(w)
    wait_for(lambda: group_caught_up(bootstrap, names.app_id, names.src), LIVENESS,
             "the first batch")
    return w


def _pg_app(bootstrap: str, dsn: str, prefix: str) -> tuple[AppTopics, str, dict[str, str]]:
    names = app_topics(bootstrap, prefix, partitions=2)
    table = new_table(dsn)
    return names, table, {**names.env, "TEST_PG_DSN": dsn, "TEST_PG_TABLE": table}


@pytest.fixture
def stop_workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop_quietly()


def test_postgres_table(kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch,
                        stop_workers: list[WorkerProcess]) -> None:
    names, table, env = _pg_app(kafka_bootstrap, postgres_dsn, "rprpg")
    w = _synced(kafka_bootstrap, tmp_path, "tests.apps.pg_sink:app", names, env, inputs(FIRST),
                stop_workers)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {table} WHERE id IN (5, 6)")
        conn.execute(f"INSERT INTO {table} VALUES (7, 7, 'planted'), (NULL, 1, 'planted')")
        conn.execute(f"UPDATE {table} SET amount = 1000 WHERE id = 8")
    produce_records(kafka_bootstrap, names.src, inputs(SECOND))
    opts = CheckOptions(kafka_bootstrap, names.src, f"postgres:{table}", fields=("amount",),
                        dsn=postgres_dsn, group=names.app_id, open_wait=30)
    repaired = _repair_killing(w, opts, _sinks("tests.apps.pg_sink", env, monkeypatch))
    _assert_planted_plan(repaired)
    _restart(w, kafka_bootstrap, names.app_id, names.src)
    report = verify(kafka_bootstrap, names.src, f"postgres:{table}", fields=["amount"],
                    dsn=postgres_dsn, group=names.app_id, open_wait=30)
    assert report.ok and report.in_flight_count == 0, report.summary()
    assert_rows_exactly_once(postgres_dsn, table, range(600))
    _repair_with_the_cli(kafka_bootstrap, postgres_dsn, table, names, env)
    assert_rows_exactly_once(postgres_dsn, table, range(600))
    assert w.terminate() == 0, w.log()[-3000:]


def _repair_with_the_cli(bootstrap: str, dsn: str, table: str, names: AppTopics,
                         env: dict[str, str]) -> None:
    """``--app``: the group and the sink's columns come from the app the worker runs."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {table} WHERE id = 9")
    done = subprocess.run(
        [sys.executable, "-m", "eokafka", "verify", names.src, f"postgres:{table}", "--dsn", dsn,
         "--bootstrap-servers", bootstrap, "--fields", "amount", "--app",
         "tests.apps.pg_sink:app", "--repair", "--yes", "--json"],
        cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=LIVENESS,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["report"]["group"] == names.app_id
    assert [(i["action"], i["id"]) for i in result["plan"]["add"]] == [("add", "9")]
    with psycopg.connect(dsn) as conn:
        assert conn.execute(f"SELECT amount, src FROM {table} WHERE id = 9").fetchall() == [
            (9, None)  # the sink's columns: src comes from the app's processor, not the source
        ]


def test_postgres_repair_waits_for_a_transaction_prepared_before_its_commit(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    stop_workers: list[WorkerProcess],
) -> None:
    """The worker dies between its Kafka commit and COMMIT PREPARED: those rows are committed
    for Kafka but invisible until its recovery. The repair must not take them for missing:
    it refuses, naming the prepared transaction, until a worker has resolved it."""
    names, table, env = _pg_app(kafka_bootstrap, postgres_dsn, "rprprep")
    w = _synced(kafka_bootstrap, tmp_path, "tests.apps.pg_sink:app", names, env, inputs(FIRST),
                stop_workers)
    assert w.terminate() == 0, w.log()[-3000:]
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {table} WHERE id IN (5, 6)")
    crashed = tmp_path / "crashed"
    w.env.update({"EOKAFKA_TEST_CRASH_AT": "postgres.before-commit-prepared:1",
                  "EOKAFKA_TEST_CRASH_FLAG": str(crashed)})
    w.start()
    produce_records(kafka_bootstrap, names.src, inputs(SECOND))
    wait_for(lambda: crashed.exists() and not w.alive, LIVENESS,
             "the worker to die after its Kafka commit")
    held = [g for g in prepared(postgres_dsn) if names.app_id in g]
    assert len(held) == 1
    opts = CheckOptions(kafka_bootstrap, names.src, f"postgres:{table}", fields=("amount",),
                        dsn=postgres_dsn, group=names.app_id, open_wait=30, prepared_wait=1)
    sinks = _sinks("tests.apps.pg_sink", env, monkeypatch)
    with pytest.raises(NotNow, match=held[0]):
        repair(opts, RepairOptions(apply=True), sinks)
    assert len(rows(postgres_dsn, table)) == len(FIRST) - 2  # nothing changed
    _restart(w, kafka_bootstrap, names.app_id, names.src)  # its recovery commits it
    repaired = repair(opts, RepairOptions(apply=True), sinks)
    assert _ids(repaired, "add") == Counter({"5": 1, "6": 1}) and repaired.plan.changes == 2
    assert verify(kafka_bootstrap, names.src, f"postgres:{table}", fields=["amount"],
                  dsn=postgres_dsn, group=names.app_id, open_wait=30).ok
    assert_rows_exactly_once(postgres_dsn, table, range(600))
    assert w.terminate() == 0, w.log()[-3000:]


def _plant_in_parts(folder: Path) -> None:
    """Delete the lines of 5 and 6, copy 7's line into another part, alter 8, add junk."""
    parts = sorted(folder.glob("*.jsonl"))
    seven = b""
    for part in parts:
        kept = []
        for line in part.read_bytes().splitlines(keepends=True):
            n = json.loads(line)["id"]
            if n in (5, 6):
                continue
            if n == 7:
                seven = line
            if n == 8:
                line = json.dumps({**json.loads(line), "amount": 1000}).encode() + b"\n"
            kept.append(line)
        part.write_bytes(b"".join(kept))
    other = next(p for p in parts if seven not in p.read_bytes())
    with open(other, "ab") as f:
        f.write(seven + b"not json\n")


def test_files_folder(kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      stop_workers: list[WorkerProcess]) -> None:
    """The parts never roll while the worker runs: the second batch is committed but sits in
    in-progress parts during the repair, invisible, and must be neither expected nor added."""
    names = app_topics(kafka_bootstrap, "rprfiles", partitions=2)
    out = tmp_path / "out"
    env = {**names.env, "TEST_FILES_DIR": str(out), "TEST_FILES_FORMAT": "jsonl",
           "TEST_ROLL_BYTES": "100000000", "TEST_ROLL_SECONDS": "3600"}
    w = _synced(kafka_bootstrap, tmp_path, "tests.apps.file_sink:app", names, env,
                inputs(FIRST), stop_workers)
    assert w.terminate() == 0, w.log()[-3000:]  # a clean stop finishes the parts
    _plant_in_parts(out)
    w.start()
    produce_records(kafka_bootstrap, names.src, inputs(SECOND))
    wait_for(lambda: group_caught_up(kafka_bootstrap, names.app_id, names.src), LIVENESS,
             "the second batch")
    opts = CheckOptions(kafka_bootstrap, names.src, f"files:{out}", fields=("amount",),
                        group=names.app_id, open_wait=30)
    repaired = _repair_killing(w, opts, _sinks("tests.apps.file_sink", env, monkeypatch))
    _assert_planted_plan(repaired)
    assert all("in-progress part" in c.get("below_commit_because", "")
               for c in repaired.report.checked_up_to), repaired.report.checked_up_to
    assert repaired.report.in_flight_count == len(SECOND)
    _restart(w, kafka_bootstrap, names.app_id, names.src)
    assert w.terminate() == 0, w.log()[-3000:]
    report = verify(kafka_bootstrap, names.src, f"files:{out}", fields=["amount"],
                    group=names.app_id, open_wait=30)
    assert report.ok and report.in_flight_count == 0, report.summary()
    rows = [json.loads(line) for p in sorted(out.glob("*.jsonl"))
            for line in p.read_bytes().splitlines()]
    assert Counter(r["id"] for r in rows) == Counter(range(600))
    assert all(r["amount"] == r["id"] % 97 for r in rows)


def test_compacted_kafka_topic(kafka_bootstrap: str, tmp_path: Path,
                               stop_workers: list[WorkerProcess]) -> None:
    names = app_topics(kafka_bootstrap, "rprkafka", partitions=2, create_output=False)
    create_topic(kafka_bootstrap, names.out, 2, config={"cleanup.policy": "compact"})
    lose = {5, 6}
    source = {n: json.dumps({"id": n, "amount": n % 97, **({"lose": True} if n in lose else {})})
              for n in range(600)}
    w = _synced(kafka_bootstrap, tmp_path, "tests.apps.sync_copy:app", names, names.env,
                [(str(n).encode(), source[n].encode()) for n in FIRST], stop_workers)
    produce_records(kafka_bootstrap, names.out, [
        (b"7-copy", source[7].encode()),
        (b"8", json.dumps({"id": 8, "amount": 1000}).encode()),
        (b"junk", b"not json"),
    ])
    produce_records(kafka_bootstrap, names.src,
                    [(str(n).encode(), source[n].encode()) for n in SECOND])
    opts = CheckOptions(kafka_bootstrap, names.src, f"kafka:{names.out}", fields=("amount",),
                        group=names.app_id, open_wait=30)
    repaired = _repair_killing(w, opts, {})
    _assert_planted_plan(repaired)
    _restart(w, kafka_bootstrap, names.app_id, names.src)
    report = verify(kafka_bootstrap, names.src, f"kafka:{names.out}", fields=["amount"],
                    group=names.app_id, open_wait=30)
    assert report.ok and report.in_flight_count == 0, report.summary()
    table: dict[bytes | None, bytes | None] = {}
    for r in read_committed(kafka_bootstrap, names.out):
        table[r.key] = r.value
    live = {k: v for k, v in table.items() if v is not None}
    assert live == {str(n).encode(): source[n].encode() for n in range(600)}
    assert w.terminate() == 0, w.log()[-3000:]
