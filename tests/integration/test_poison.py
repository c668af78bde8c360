"""Poison records under each policy: fail, skip, dead-letter; and bad serde input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.harness import app_topics, worker
from tests.kafka_helpers import produce_records, read_committed

pytestmark = pytest.mark.integration
TARGET = "tests.apps.eos_copy:app"
POISON, GARBAGE = 50, 70


def _inputs() -> list[tuple[bytes, bytes]]:
    out = []
    for n in range(100):
        if n == POISON:
            value = json.dumps({"id": n, "poison": True}).encode()
        elif n == GARBAGE:
            value = b"\xff not json"
        else:
            value = json.dumps({"id": n}).encode()
        out.append((str(n).encode(), value))
    return out


def _setup(bootstrap: str) -> tuple[dict[str, str], str, str, str]:
    names = app_topics(bootstrap, "poison", 1)  # one partition: record n sits at offset n
    produce_records(bootstrap, names.src, _inputs())
    return names.env, names.app_id, names.src, names.out


def _ids(records: list) -> list[int]:
    return sorted(json.loads(r.value)["id"] for r in records)


def test_fail_policy_aborts_exits_and_names_the_record(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env, _, src, out = _setup(kafka_bootstrap)
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, ["--instance-id", "f"]).start()
    try:
        assert w.wait(60) == 1
        assert f"{src}[0]@{POISON}" in w.log()
        assert f"poison order {POISON}" in w.log()
        assert all(n < POISON for n in _ids(read_committed(kafka_bootstrap, out)))
        w.start()  # nothing was skipped: it stops at the same record again
        assert w.wait(60) == 1
        assert w.log().count(f"{src}[0]@{POISON}") >= 2
    finally:
        w.stop_quietly()


def test_bad_bytes_name_the_serde_and_the_record(kafka_bootstrap: str, tmp_path: Path) -> None:
    env, _, src, out = _setup(kafka_bootstrap)
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, ["--on-error", "skip"]).start()
    try:
        expected = [n for n in range(100) if n not in (POISON, GARBAGE)]
        records = read_committed(kafka_bootstrap, out, expected_count=2 * len(expected))
        assert _ids(records) == sorted(expected * 2)
        log = w.log()
        assert f"{src}[0]@{GARBAGE} (copy, deserialize)" in log
        assert "Json could not decode" in log
        assert log.count("skipped poison record") == 2
        assert w.terminate() == 0
    finally:
        w.stop_quietly()


def test_dead_letter_policy_sends_originals_with_error_headers(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env, app_id, src, out = _setup(kafka_bootstrap)
    extra = ["--on-error", "dead-letter"]
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, extra).start()
    try:
        expected = [n for n in range(100) if n not in (POISON, GARBAGE)]
        records = read_committed(kafka_bootstrap, out, expected_count=2 * len(expected))
        assert _ids(records) == sorted(expected * 2)
        dead = read_committed(kafka_bootstrap, f"{app_id}-dlq", expected_count=2)
        assert len(dead) == 2
        by_offset = {int(dict(r.headers)["eokafka.source.offset"]): r for r in dead}
        assert set(by_offset) == {POISON, GARBAGE}
        poison, garbage = dict(by_offset[POISON].headers), dict(by_offset[GARBAGE].headers)
        assert poison["eokafka.source.topic"] == src.encode()
        assert poison["eokafka.source.partition"] == b"0"
        assert poison["eokafka.error.stage"] == b"process"
        assert poison["eokafka.error.class"] == b"ValueError"
        assert poison["eokafka.processor"] == b"copy"
        assert garbage["eokafka.error.stage"] == b"deserialize"
        assert garbage["eokafka.error.class"] == b"SerdeError"
        assert b"Json" in garbage["eokafka.error.message"]
        assert by_offset[GARBAGE].value == b"\xff not json"
        assert by_offset[POISON].key == str(POISON).encode()
        assert w.terminate() == 0
    finally:
        w.stop_quietly()


def test_output_the_producer_refuses_is_dead_lettered_without_partial_output(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    names = app_topics(kafka_bootstrap, "big", 1)
    app_id, src, out, env = names.app_id, names.src, names.out, names.env
    values = [{"id": n, "big": n == 30} for n in range(60)]
    produce_records(kafka_bootstrap, src, [(b"k", json.dumps(v).encode()) for v in values])
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, ["--on-error", "dead-letter"]).start()
    try:
        expected = [n for n in range(60) if n != 30]
        records = read_committed(kafka_bootstrap, out, expected_count=2 * len(expected))
        assert _ids(records) == sorted(expected * 2)  # nothing of record 30, not even copy 0
        dead = read_committed(kafka_bootstrap, f"{app_id}-dlq", expected_count=1)
        headers = dict(dead[0].headers)
        assert headers["eokafka.error.stage"] == b"produce"
        assert headers["eokafka.source.offset"] == b"30"
        assert b"MSG_SIZE_TOO_LARGE" in headers["eokafka.error.message"]
        assert w.terminate() == 0
    finally:
        w.stop_quietly()
