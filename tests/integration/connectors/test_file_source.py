"""The file source: a folder of JSON Lines into Kafka exactly once, under SIGKILL.

The worker SIGKILLs itself (crash point) while a transaction with records is open; files
grow and appear during the run, one line written in two halves. Afterwards the topic must
hold every line of every file exactly once, and the positions topic the files' full sizes
(and line counts) by file identity.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.connectors.pg_helpers import assert_kafka_output
from tests.integration.harness import worker
from tests.kafka_helpers import create_topic, read_committed, unique_name

pytestmark = pytest.mark.integration


def _lines(ids: range) -> str:
    return "".join(json.dumps({"id": n, "amount": n % 97}) + "\n" for n in ids)


def test_files_into_kafka_exactly_once_under_sigkill(kafka_bootstrap: str, tmp_path: Path) -> None:
    app_id, out = unique_name("fsrc"), unique_name("fsrc-out")
    create_topic(kafka_bootstrap, out, 3)
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        (folder / f"part-{i}.jsonl").write_text(_lines(range(i * 3000, (i + 1) * 3000)))
    env = {
        "TEST_APP_ID": app_id,
        "TEST_SOURCE_DIR": str(folder),
        "TEST_OUTPUT": out,
        "EOKAFKA_TEST_CRASH_AT": "file-source.poll:6",  # 2 commits, then 500 records open
        "EOKAFKA_TEST_CRASH_FLAG": str(tmp_path / "crashed"),
        "EOKAFKA_BATCH_SIZE": "500",
        "EOKAFKA_COMMIT_EVERY": "1000",
        "EOKAFKA_COMMIT_INTERVAL_MS": "5000",
    }
    w = worker("tests.apps.file_source:app", kafka_bootstrap, tmp_path, "w", env,
               ["--instance-id", "a"]).start()
    try:
        assert w.wait(120) == -9, w.log()[-3000:]  # SIGKILLed at the crash point
        w.start()
        # Input keeps coming: a new file, and lines appended to one, the last in two halves.
        (folder / "part-3.jsonl").write_text(_lines(range(9000, 10000)))
        with open(folder / "part-0.jsonl", "a") as f:
            f.write(_lines(range(10000, 10499)))
            f.write('{"id": 10499, "amo')
            f.flush()
            read_committed(kafka_bootstrap, out, expected_count=10499, timeout=120)
            f.write('unt": 23}\n')
        want = [(str(n).encode(), {"id": n, "amount": n % 97}) for n in range(10500)]
        assert_kafka_output(kafka_bootstrap, out, want)  # every line written, once
        assert w.alive, w.log()[-3000:]
        assert w.terminate() == 0, w.log()[-3000:]
        positions = read_committed(kafka_bootstrap, f"{app_id}-source-offsets")
        last = json.loads(positions[-1].value)["files"]  # by identity: bytes, lines, head
        files = [(p.stat(), p.read_bytes().count(b"\n")) for p in folder.glob("*.jsonl")]
        assert {k: v[:2] for k, v in last.items()} == {
            f"{st.st_dev}:{st.st_ino}": [st.st_size, lines] for st, lines in files
        }
    finally:
        w.stop_quietly()
