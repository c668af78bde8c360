"""Source records that can't be read or sent follow the app's on_error policy, on real workers.

A folder holds good lines, a line too large for the producer's ``message.max.bytes``, a line
that is not UTF-8 and one that is not JSON, beside a second file of good lines. Under every
policy no producer is ever re-created (``eokafka_producer_resets_total`` stays 0); under
``skip`` and ``dead-letter`` every good line arrives exactly once, and the dead letters name
the source, file, line and byte, the error class and message. A dead letter carries the
line's bytes when it could not be read, the record's key and value as they were to be
produced when it could not be sent.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from eokafka.serdes import Json
from tests.integration.harness import WorkerProcess, wait_for, worker
from tests.integration.test_stalls import _free_port, _metric
from tests.kafka_helpers import Record, create_topic, read_committed, unique_name

pytestmark = pytest.mark.integration
TARGET = "tests.apps.file_source:app"
LIVENESS = 180  # generous bound for a loaded 2-core machine
BIG = 1_020_000  # bytes: over the default message.max.bytes (1,000,000), under 1 MiB


def _line(n: int, pad: int = 0) -> bytes:
    return json.dumps({"id": n, "pad": "x" * pad}).encode() + b"\n"


BAD_UTF8 = b'{"id": 99, "s": "\xff\xfe"}'
BAD_JSON = b'{"id": 98, oops'


def _folder(tmp: Path, faults: tuple[str, ...]) -> tuple[Path, list[int], dict[str, int]]:
    """a.jsonl with the faults among good lines, b.jsonl all good; the good ids, the fault
    lines (1-based) by kind."""
    folder = tmp / "in"
    folder.mkdir()
    lines = [_line(n) for n in range(5)]
    where: dict[str, int] = {}
    if "big" in faults:
        where["big"] = len(lines) + 1
        lines.append(_line(5, pad=BIG))
    lines += [_line(n) for n in range(6, 10)]
    if "utf8" in faults:
        where["utf8"] = len(lines) + 1
        lines.append(BAD_UTF8 + b"\n")
    if "json" in faults:
        where["json"] = len(lines) + 1
        lines.append(BAD_JSON + b"\n")
    lines += [_line(n) for n in range(10, 15)]
    (folder / "a.jsonl").write_bytes(b"".join(lines))
    (folder / "b.jsonl").write_bytes(b"".join(_line(n) for n in range(100, 120)))
    good = [*range(5), *range(6, 15), *range(100, 120)]
    return folder, good, where


def _run(
    bootstrap: str, tmp: Path, folder: Path, policy: str
) -> tuple[WorkerProcess, int, str, str]:
    app_id, out = unique_name("fpoison"), unique_name("fpoison-out")
    create_topic(bootstrap, out, 2)
    port = _free_port()
    env = {"TEST_APP_ID": app_id, "TEST_SOURCE_DIR": str(folder), "TEST_OUTPUT": out}
    args = ["--instance-id", "a", "--on-error", policy, "--metrics-port", str(port),
            "--create-topics"]  # fmt: skip
    return worker(TARGET, bootstrap, tmp, "w", env, args).start(), port, app_id, out


def _good_arrive_once(bootstrap: str, out: str, good: list[int]) -> None:
    records = read_committed(bootstrap, out, expected_count=len(good), timeout=LIVENESS)
    ids = sorted(json.loads(r.value)["id"] for r in records)
    assert ids == sorted(good), f"{len(ids)} records: {ids}"


def _headers(record: Record) -> dict[str, str]:
    return {k: (v or b"").decode(errors="replace") for k, v in record.headers}


@pytest.mark.parametrize("policy", ["skip", "dead-letter"])
def test_bad_and_oversized_source_lines_follow_the_policy(
    kafka_bootstrap: str, tmp_path: Path, policy: str
) -> None:
    folder, good, where = _folder(tmp_path, ("big", "utf8", "json"))
    w, port, app_id, out = _run(kafka_bootstrap, tmp_path, folder, policy)
    try:
        _good_arrive_once(kafka_bootstrap, out, good)
        counter = "eokafka_records_skipped_total" if policy == "skip" else (
            "eokafka_records_dead_lettered_total")  # fmt: skip
        wait_for(lambda: _metric(port, counter) == 3 or not w.alive, LIVENESS,
                 f"{counter} to reach 3")  # fmt: skip
        assert w.alive, w.log()[-3000:]
        assert _metric(port, "eokafka_producer_resets_total") == 0
        with open(folder / "b.jsonl", "ab") as f:  # the source goes on after them
            f.write(_line(200))
        _good_arrive_once(kafka_bootstrap, out, [*good, 200])
        assert _metric(port, "eokafka_producer_resets_total") == 0
        assert w.terminate() == 0, w.log()[-3000:]
        log = w.log()
        if policy == "skip":
            for kind in ("big", "utf8", "json"):
                assert f"a.jsonl line {where[kind]} " in log, log[-3000:]
            return
        dead = read_committed(kafka_bootstrap, f"{app_id}-dlq", expected_count=3)
        assert len(dead) == 3
        by_line = {int(_headers(r)["eokafka.source.line"]): r for r in dead}
        assert sorted(by_line) == sorted(where.values())
        a_file = str(folder / "a.jsonl")
        offsets = {}
        at = 0
        for n, line in enumerate((folder / "a.jsonl").read_bytes().splitlines(True), 1):
            offsets[n] = at
            at += len(line)
        for kind, line in where.items():
            h = _headers(by_line[line])
            assert h["eokafka.source.name"] == "files"
            assert h["eokafka.source.file"] == a_file
            assert int(h["eokafka.source.byte"]) == offsets[line]
            assert h["eokafka.error.class"] == ("OutputRefusedError" if kind == "big"
                                                else "BadSourceLine")  # fmt: skip
            assert h["eokafka.error.message"], h
        assert "MSG_SIZE_TOO_LARGE" in _headers(by_line[where["big"]])["eokafka.error.message"]
        assert by_line[where["utf8"]].value == BAD_UTF8
        assert by_line[where["json"]].value == BAD_JSON
        big = by_line[where["big"]]
        assert _headers(big)["eokafka.truncated"].startswith("value")
        record = Json().serialize({"id": 5, "pad": "x" * BIG})  # as it was to be produced
        assert big.value == record[: len(big.value)] and len(big.value) > 900_000
        assert big.key == b"5"
    finally:
        w.stop_quietly()


@pytest.mark.parametrize("fault", ["big", "utf8", "json"])
def test_fail_stops_naming_the_source_line(
    kafka_bootstrap: str, tmp_path: Path, fault: str
) -> None:
    folder, _, where = _folder(tmp_path, (fault,))
    w, _, _, _ = _run(kafka_bootstrap, tmp_path, folder, "fail")
    try:
        assert w.wait(LIVENESS) == 1, w.log()[-3000:]
        log = w.log()
        named = f"poison source record at source files: {folder / 'a.jsonl'} line {where[fault]}"
        assert named in log, log[-3000:]
        assert "re-creating the transactional producer" not in log
    finally:
        w.stop_quietly()


def test_a_record_only_the_broker_refuses_is_set_aside_on_the_replay(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Compressed (lz4), so the topic's limit is the broker's to check: the refused record's
    transaction aborts once, and the replay dead-letters it; no producer is re-created."""
    folder = tmp_path / "in"
    folder.mkdir()
    noise = base64.b64encode(os.urandom(90_000)).decode()  # incompressible, ~120 kB
    lines = [_line(n) for n in range(5)]
    lines.append(json.dumps({"id": 5, "pad": noise}).encode() + b"\n")
    lines += [_line(n) for n in range(6, 12)]
    (folder / "a.jsonl").write_bytes(b"".join(lines))
    app_id, out = unique_name("fpoison"), unique_name("fpoison-out")
    create_topic(kafka_bootstrap, out, 1, config={"max.message.bytes": "60000"})
    port = _free_port()
    env = {"TEST_APP_ID": app_id, "TEST_SOURCE_DIR": str(folder), "TEST_OUTPUT": out,
           "EOKAFKA_CONFIG": "producer.compression.type=lz4"}  # fmt: skip
    args = ["--instance-id", "a", "--on-error", "dead-letter", "--metrics-port", str(port),
            "--create-topics"]  # fmt: skip
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, args).start()
    try:
        _good_arrive_once(kafka_bootstrap, out, [n for n in range(12) if n != 5])
        (dead,) = read_committed(kafka_bootstrap, f"{app_id}-dlq", expected_count=1)
        h = _headers(dead)
        assert h["eokafka.source.line"] == "6" and h["eokafka.error.stage"] == "produce"
        assert "the broker refused it" in h["eokafka.error.message"], h
        assert _metric(port, "eokafka_producer_resets_total") == 0
        assert w.terminate() == 0, w.log()[-3000:]
    finally:
        w.stop_quietly()


@pytest.mark.integration
def test_an_oversized_outbox_row_is_dead_lettered_naming_table_and_id(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
) -> None:
    import psycopg

    table = unique_name("outbox").replace("-", "_")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, note text NOT NULL, "
                     "txid xid8 NOT NULL DEFAULT pg_current_xact_id())")  # fmt: skip
        notes = ["ok"] * 4 + ["x" * BIG] + ["ok"] * 5
        conn.cursor().executemany(f"INSERT INTO {table} (note) VALUES (%s)", [(n,) for n in notes])
    app_id, out = unique_name("pgpoison"), unique_name("pgpoison-out")
    create_topic(kafka_bootstrap, out, 1)
    port = _free_port()
    env = {"TEST_APP_ID": app_id, "TEST_PG_DSN": postgres_dsn, "TEST_PG_TABLE": table,
           "TEST_OUTPUT": out}  # fmt: skip
    args = ["--instance-id", "a", "--on-error", "dead-letter", "--metrics-port", str(port),
            "--create-topics"]  # fmt: skip
    w = worker("tests.apps.pg_source:app", kafka_bootstrap, tmp_path, "w", env, args).start()
    try:
        records = read_committed(kafka_bootstrap, out, expected_count=9, timeout=LIVENESS)
        assert sorted(json.loads(r.value)["id"] for r in records) == [*range(1, 5), *range(6, 11)]
        (dead,) = read_committed(kafka_bootstrap, f"{app_id}-dlq", expected_count=1)
        h = _headers(dead)
        assert (h["eokafka.source.name"], h["eokafka.source.table"]) == ("outbox", table)
        assert h["eokafka.source.id"] == "5" and dead.key == b"5"
        assert h["eokafka.error.class"] == "OutputRefusedError"
        assert _metric(port, "eokafka_producer_resets_total") == 0
        assert w.terminate() == 0, w.log()[-3000:]
    finally:
        w.stop_quietly()
