"""The app's own topics are fit for purpose: repartition topics keep records until the app
committed past them, then are purged; changelogs must be compacted; the dead-letter topic of
late records is a dead-letter topic, not a repartition topic.

Real ``eokafka run`` processes; topic configs and offsets are read with the admin client.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    ConfigResource,
    ConfigSource,
    OffsetSpec,
    ResourceType,
)

from tests.integration.harness import AppTopics, app_topics, wait_for, worker
from tests.integration.test_startup import run_to_exit
from tests.kafka_helpers import create_topic, produce_records, read_committed

pytestmark = pytest.mark.integration


def _low_watermarks(admin: AdminClient, topic: str, partitions: int) -> dict[int, int]:
    request = {TopicPartition(topic, p): OffsetSpec.earliest() for p in range(partitions)}
    futures = admin.list_offsets(request)
    return {tp.partition: f.result(30).offset for tp, f in futures.items()}


def _committed(admin: AdminClient, group: str, topic: str, partitions: int) -> dict[int, int]:
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p) for p in range(partitions)]
    )
    result = admin.list_consumer_group_offsets([request])[group].result(30)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def _purged(
    bootstrap: str, admin: AdminClient, names: AppTopics, repartition: str, floor: dict[int, int]
) -> bool:
    """Whether the low watermarks reached ``floor``; never past the committed offsets."""
    produce_records(bootstrap, names.src, [(b"tick", b"")])  # no words, but a commit
    committed = _committed(admin, names.app_id, repartition, 2)
    low = _low_watermarks(admin, repartition, 2)
    assert all(low[p] <= max(committed[p], 0) for p in low), (low, committed)
    return all(low[p] >= floor[p] for p in low)


def test_repartition_topics_keep_records_forever_and_are_purged_as_the_app_commits(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    names = app_topics(kafka_bootstrap, "purge", 2)
    repartition = f"{names.app_id}-by-word-repartition"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    env = {**names.env, "EOKAFKA_PURGE_INTERVAL_MS": "200"}
    w = worker("tests.apps.dsl_apps:wordcount", kafka_bootstrap, tmp_path, "w", env)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    try:
        w.start()
        expected: Counter[str] = Counter()
        for phase in range(2):
            sentences = [" ".join(words[(i + j) % 8] for j in range(3)) for i in range(1_000)]
            expected.update(word for s in sentences for word in s.split())
            produce_records(
                kafka_bootstrap,
                names.src,
                [(f"s{phase}-{i}".encode(), s.encode()) for i, s in enumerate(sentences)],
            )
            read_committed(kafka_bootstrap, names.out, expected_count=sum(expected.values()))

            # Everything below the committed positions goes, as later commits come.
            floor = _committed(admin, names.app_id, repartition, 2)
            assert sum(floor.values()) >= sum(expected.values())
            wait_for(
                lambda floor=floor: _purged(kafka_bootstrap, admin, names, repartition, floor),
                120,
                f"the purge of {repartition} below {floor}",
                interval=0.5,
            )

        resource = ConfigResource(ResourceType.TOPIC, repartition)
        config = admin.describe_configs([resource])[resource].result(30)
        assert config["retention.ms"].value == "-1"
        assert w.terminate() == 0, w.log()[-3000:]
    finally:
        w.stop_quietly()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"cleanup.policy": "delete"}, "has cleanup.policy='delete', expected 'compact'"),
        (
            {"cleanup.policy": "compact,delete", "retention.ms": "86400000"},
            "has cleanup.policy='compact,delete' and retention.ms=86400000, expected "
            "retention.ms=-1 (or cleanup.policy='compact')",
        ),
    ],
)
def test_a_changelog_that_can_lose_keys_is_a_clear_error(
    kafka_bootstrap: str, tmp_path: Path, config: dict[str, str], message: str
) -> None:
    names = app_topics(kafka_bootstrap, "policy", 2)
    changelog = f"{names.app_id}-totals-changelog"
    create_topic(kafka_bootstrap, changelog, 2, config=config)
    env = {**names.env, "TEST_BACKEND": "rocksdb"}
    code, out = run_to_exit("tests.apps.totals:app", kafka_bootstrap, tmp_path, env, [])
    assert code != 0
    assert "Traceback" not in out
    assert f"changelog topic {changelog!r} of store 'totals' {message}" in out, out


def test_late_records_go_to_a_dead_letter_topic_and_a_bounded_run_still_ends(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``window(..., late="dead-letter")``: the app's dead-letter topic is created as the
    ``on_error`` policy creates it (the cluster's retention, no override), not as an internal
    topic the group reads (infinite retention, waited for by ``--until-end``)."""
    names = app_topics(kafka_bootstrap, "late-dlq", 1)
    dlq = f"{names.app_id}-dlq"
    stamps = [100, 1_500, 200, 1_400, 50, 9_000]  # tumbling 1 s windows, grace 300 ms
    produce_records(
        kafka_bootstrap,
        names.src,
        [(b"k", f'{{"ts": {ts}, "v": 1}}'.encode()) for ts in stamps],
        timestamps=stamps,
    )
    late, stream_time = [], -1
    for offset, ts in enumerate(stamps):
        stream_time = max(stream_time, ts)
        if ts - ts % 1_000 + 1_000 + 300 <= stream_time:
            late.append(offset)
    env = {**names.env, "TEST_WINDOW": "tumbling", "TEST_LATE": "dead-letter"}
    target = "tests.apps.window_apps:app"
    # The second run finds the first one's dead letters there, and nothing new to read.
    for records_in in (len(stamps), 0):
        code, out = run_to_exit(target, kafka_bootstrap, tmp_path, env, ["--until-end"])
        assert code == 0, out[-3000:]
        assert f"bounded run finished (end): {records_in} records in" in out, out[-3000:]

    dead = read_committed(kafka_bootstrap, dlq, expected_count=len(late))
    assert [int(dict(r.headers)["eokafka.source.offset"]) for r in dead] == late == [2, 4]
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, dlq)
    retention = admin.describe_configs([resource])[resource].result(30)["retention.ms"]
    assert retention.value != "-1"
    assert ConfigSource(retention.source) != ConfigSource.DYNAMIC_TOPIC_CONFIG  # no override
