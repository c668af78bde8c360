"""The file sink under SIGKILL (after the fsync, between the renames) on real worker processes.

Readers look only at finished part files: every input must be in them exactly once, each
file whole, and the Kafka output exactly once beside them.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.integration.connectors.pg_helpers import (
    assert_kafka_output,
    assert_verified,
    copies_of,
    inputs,
    run_until,
)
from tests.integration.harness import app_topics, worker
from tests.kafka_helpers import end_offsets, produce_records

pytestmark = pytest.mark.integration
TARGET = "tests.apps.file_sink:app"


def finished_ids(directory: Path, fmt: str) -> list[int]:
    ids: list[int] = []
    for path in sorted(directory.glob(f"*.{fmt}")):
        text = path.read_text()
        assert text.endswith("\n"), f"{path.name} ends in a partial record"
        if fmt == "jsonl":
            ids += [json.loads(line)["id"] for line in text.splitlines()]
        else:
            ids += [int(r["id"]) for r in csv.DictReader(text.splitlines())]
    return ids


def group_caught_up(bootstrap: str, group: str, topic: str) -> bool:
    ends = end_offsets(bootstrap, topic)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        got = consumer.committed([TopicPartition(topic, p) for p in ends], timeout=10)
    finally:
        consumer.close()
    return all(tp.offset == ends[tp.partition] for tp in got)


@pytest.mark.parametrize(
    ("point", "fmt"),
    [
        ("files.after-fsync", "jsonl"),
        ("files.after-prepare", "jsonl"),
        ("files.before-done", "csv"),
        ("files.mid-rename", "jsonl"),
        ("files.mid-rename", "csv"),
    ],
)
def test_sigkill_in_the_file_sink_loses_and_duplicates_nothing(
    kafka_bootstrap: str, tmp_path: Path, point: str, fmt: str
) -> None:
    total = 6_000
    names = app_topics(kafka_bootstrap, "files", partitions=2)
    out_dir = tmp_path / "out"
    env = {
        **names.env,
        "TEST_FILES_DIR": str(out_dir),
        "TEST_FILES_FORMAT": fmt,
        "EOKAFKA_TEST_CRASH_AT": f"{point}:3",
        "EOKAFKA_TEST_CRASH_FLAG": str(tmp_path / "crashed"),
        "EOKAFKA_COMMIT_EVERY": "500",
        "EOKAFKA_BATCH_SIZE": "250",
    }
    produce_records(kafka_bootstrap, names.src, inputs(range(total)))
    w = worker(TARGET, kafka_bootstrap, tmp_path, "w", env, ["--instance-id", "a"]).start()
    try:
        restarts = run_until(
            w, lambda: group_caught_up(kafka_bootstrap, names.app_id, names.src), 180
        )
        assert restarts == 1 and (tmp_path / "crashed").exists(), "the crash point never fired"
        assert w.terminate() == 0, w.log()[-3000:]  # a clean stop finishes the last parts
        ids = Counter(finished_ids(out_dir, fmt))
        dupes = [i for i, c in ids.items() if c > 1]
        missing = [i for i in range(total) if i not in ids]
        assert not dupes, f"{len(dupes)} duplicated, e.g. {dupes[:5]}"
        assert not missing, f"{len(missing)} missing, e.g. {missing[:5]}"
        assert len(list(out_dir.glob(f"*.{fmt}"))) > 3, "expected rolled part files"
        assert not list((out_dir / ".inprogress").iterdir())
        assert_verified(kafka_bootstrap, names.src, f"files:{out_dir}")
        assert_kafka_output(kafka_bootstrap, names.out, copies_of(kafka_bootstrap, names.src))
    finally:
        w.stop_quietly()
