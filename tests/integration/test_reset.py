"""``eokafka reset`` against a real broker and real workers: reset, re-run, same output.

The word count (tests/apps/dsl_apps.py:wordcount) has every kind of internal state: a
repartition topic, a changelog, a RocksDB store on disk and committed offsets. After a reset
and a re-run its output must be the first run's again, count for count; without any one part
of the reset, the re-run would output nothing or go on counting from the old totals.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient

from tests.integration.harness import REPO, AppTopics, app_topics, worker
from tests.kafka_helpers import end_offsets, produce_records, read_committed

pytestmark = pytest.mark.integration
TARGET = "tests.apps.dsl_apps:wordcount"
WORDS = "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega".split()


def _reset(
    bootstrap: str, tmp: Path, names: AppTopics, *args: str, state: str = "state"
) -> subprocess.CompletedProcess:
    env = {**os.environ, **names.env, "TEST_BACKEND": "rocksdb"}
    return subprocess.run(
        [sys.executable, "-m", "eokafka", "reset", TARGET, "--bootstrap-servers", bootstrap,
         "--state-dir", str(tmp / state), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def _committed(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    result = futures[group].result(timeout=30)
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions}


def _topics(bootstrap: str) -> set[str]:
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30).topics)


def _counts(records: list) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for r in records:
        out[r.key.decode()].append(json.loads(r.value))
    return dict(out)


def _input(bootstrap: str) -> tuple[AppTopics, int]:
    """Fresh topics with 300 sentences in the input; the number of words they hold."""
    rng = random.Random(11)
    sentences = [" ".join(rng.choices(WORDS, k=rng.randint(1, 6))) for _ in range(300)]
    names = app_topics(bootstrap, "reset", 2)
    inputs = [(f"s{i}".encode(), s.encode()) for i, s in enumerate(sentences)]
    produce_records(bootstrap, names.src, inputs)
    return names, sum(len(s.split()) for s in sentences)


def _env(names: AppTopics) -> dict[str, str]:
    # Static membership (the default): a worker stopped on purpose leaves the group as it
    # exits, so a reset right after its SIGTERM finds the group empty.
    return {**names.env, "TEST_BACKEND": "rocksdb"}


def _rerun(bootstrap: str, tmp: Path, names: AppTopics, first: list, total: int) -> list:
    """Run the app again to the end of its input; the records it added to the output."""
    rerun = worker(TARGET, bootstrap, tmp, "rerun", _env(names), ["--instance-id", "r0"])
    rerun.start()
    try:
        both = read_committed(bootstrap, names.out, expected_count=2 * total, timeout=180)
        assert rerun.terminate() == 0, rerun.log()[-3000:]
    finally:
        rerun.stop_quietly()
    first_ids = {(r.partition, r.offset) for r in first}
    second = [r for r in both if (r.partition, r.offset) not in first_ids]
    assert len(second) == total
    return second


def _first_run(bootstrap: str, tmp: Path, names: AppTopics, total: int) -> list:
    run = worker(TARGET, bootstrap, tmp, "run", _env(names), ["--instance-id", "r0"])
    run.start()
    try:
        first = read_committed(bootstrap, names.out, expected_count=total, timeout=180)
        assert run.terminate() == 0, run.log()[-3000:]
    finally:
        run.stop_quietly()
    return first


def test_reset_then_rerun_gives_the_same_output(kafka_bootstrap: str, tmp_path: Path) -> None:
    names, total = _input(kafka_bootstrap)
    changelog = f"{names.app_id}-word-counts-changelog"
    repartition = f"{names.app_id}-by-word-repartition"
    stores = tmp_path / "state" / names.app_id / "stores"
    run = worker(TARGET, kafka_bootstrap, tmp_path, "run", _env(names), ["--instance-id", "r0"])
    run.start()
    try:
        first = read_committed(kafka_bootstrap, names.out, expected_count=total, timeout=180)

        refused = _reset(kafka_bootstrap, tmp_path, names, "--yes")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "active member" in refused.stderr and "Stop every worker" in refused.stderr
        assert run.alive
        assert run.terminate() == 0, run.log()[-3000:]
    finally:
        run.stop_quietly()
    first_counts = _counts(first)
    assert all(c == list(range(1, len(c) + 1)) for c in first_counts.values())
    ends = end_offsets(kafka_bootstrap, names.src)
    committed = _committed(kafka_bootstrap, names.app_id)
    assert {p: committed[(names.src, p)] for p in ends} == ends
    assert {changelog, repartition} <= _topics(kafka_bootstrap) and stores.is_dir()

    plan = _reset(kafka_bootstrap, tmp_path, names)  # no --yes: the plan only
    assert plan.returncode == 0, plan.stderr
    for p, end in ends.items():
        assert f"{names.src}[{p}]: {end} -> 0" in plan.stdout
    assert f"{changelog} (changelog)" in plan.stdout
    assert f"{repartition} (repartition)" in plan.stdout
    assert f"wipe local state: {stores}" in plan.stdout
    assert "nothing changed" in plan.stdout
    assert _committed(kafka_bootstrap, names.app_id) == committed
    assert {changelog, repartition} <= _topics(kafka_bootstrap) and stores.is_dir()

    later = _reset(kafka_bootstrap, tmp_path, names, "--to-datetime", "2999-01-01T00:00:00Z")
    assert later.returncode == 0 and all(
        f"{names.src}[{p}]: {end} -> {end}" in later.stdout for p, end in ends.items()
    ), later.stdout + later.stderr

    done = _reset(kafka_bootstrap, tmp_path, names, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reset done" in done.stdout
    after = _committed(kafka_bootstrap, names.app_id)
    assert {p: after[(names.src, p)] for p in ends} == dict.fromkeys(ends, 0)
    assert not any(topic == repartition for topic, _ in after)  # went with the topic
    assert not {changelog, repartition} & _topics(kafka_bootstrap)
    assert not stores.exists()

    assert _counts(_rerun(kafka_bootstrap, tmp_path, names, first, total)) == first_counts


def test_a_store_a_reset_did_not_wipe_is_restored_from_the_new_changelog(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """As on a second machine: its RocksDB store is ahead of the re-created changelog."""
    names, total = _input(kafka_bootstrap)
    first = _first_run(kafka_bootstrap, tmp_path, names, total)
    elsewhere = _reset(kafka_bootstrap, tmp_path, names, "--yes", state="elsewhere")
    assert elsewhere.returncode == 0 and "local state: none" in elsewhere.stdout, (
        elsewhere.stdout + elsewhere.stderr
    )
    assert (tmp_path / "state" / names.app_id / "stores").is_dir()
    second = _rerun(kafka_bootstrap, tmp_path, names, first, total)
    assert _counts(second) == _counts(first)
