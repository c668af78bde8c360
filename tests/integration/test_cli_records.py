"""``eokafka produce`` and ``eokafka consume`` against the broker.

What produce wrote is read back with a plain confluent-kafka reader, keyed records must land
where the Java client puts them (tests/java_partitioner.py), and consume must show exactly
the committed records, in the JSON lines produce reads.
"""

from __future__ import annotations

import json
import time

from confluent_kafka import Producer

from tests.integration.cli import eokafka
from tests.integration.harness import wait_for
from tests.java_partitioner import java_partition
from tests.kafka_helpers import create_topic, end_offsets, read_committed, unique_name

# A given record time, recent: the broker deletes records older than its retention (7 days)
STAMP = (int(time.time()) // 86_400 - 1) * 86_400_000


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def _without_time(items: list[dict]) -> list[dict]:
    return [{k: v for k, v in item.items() if k != "timestamp"} for item in items]


def test_produce_then_consume(kafka_bootstrap: str) -> None:
    topic = unique_name("cli-records")
    create_topic(kafka_bootstrap, topic, 4)
    keys = [f"customer-{i}" for i in range(12)]
    lines = [json.dumps({"key": k, "value": {"n": i}}) for i, k in enumerate(keys)]
    lines.append(json.dumps({"key": None, "value": "plain", "partition": 3,
                             "timestamp": STAMP, "headers": {"src": "line"}}))  # fmt: skip
    lines.append(json.dumps({"key": "gone", "value": None, "partition": 0}))  # a tombstone
    done = eokafka(
        "produce", topic, "-H", "run=7", bootstrap=kafka_bootstrap, stdin="\n".join(lines) + "\n"
    )
    assert (done.code, done.err) == (0, ""), done
    assert done.out.startswith(f"wrote 14 records to {topic} (partitions "), done

    written = read_committed(kafka_bootstrap, topic, 14)
    by_key = {r.key: r for r in written}
    for i, key in enumerate(keys):
        record = by_key[key.encode()]
        assert record.partition == java_partition(key.encode(), 4), key  # murmur2, as Java
        assert json.loads(record.value) == {"n": i}
        assert record.headers == [("run", b"7")]
    plain = by_key[None]
    assert (plain.partition, plain.value, plain.timestamp) == (3, b'"plain"', STAMP)
    assert plain.headers == [("src", b"line"), ("run", b"7")]
    assert (by_key[b"gone"].partition, by_key[b"gone"].value) == (0, None)

    done = eokafka("consume", topic, "--until-end", bootstrap=kafka_bootstrap)
    assert (done.code, done.err) == (0, ""), done
    shown = sorted(_lines(done.out), key=lambda r: (r["partition"], r["offset"]))
    expected = [
        {
            "key": None if r.key is None else r.key.decode(),
            "value": None if r.value is None else json.loads(r.value),
            "partition": r.partition,
            "offset": r.offset,
            "timestamp": r.timestamp,
            "headers": {name: value.decode() for name, value in r.headers},
        }
        for r in written
    ]
    assert shown == expected

    # Its lines are produce's input: a copy of the topic, partitions and all.
    copy = unique_name("cli-records-copy")
    create_topic(kafka_bootstrap, copy, 4)
    again = eokafka("produce", copy, bootstrap=kafka_bootstrap, stdin=done.out)
    assert (again.code, again.err) == (0, ""), again
    copied = eokafka("consume", copy, "--until-end", bootstrap=kafka_bootstrap)
    assert sorted(map(json.dumps, _without_time(_lines(copied.out)))) == sorted(
        map(json.dumps, _without_time(shown))
    )

    one = eokafka("consume", topic, "--until-end", "--partition", "3", "--from", "1",
                  bootstrap=kafka_bootstrap)  # fmt: skip
    assert [(r["partition"], r["offset"]) for r in _lines(one.out)] == [
        (3, o) for o in range(1, sum(1 for r in written if r.partition == 3))
    ], one
    first = eokafka("consume", topic, "--max", "2", bootstrap=kafka_bootstrap)
    assert (first.code, len(first.out.splitlines())) == (0, 2), first
    newer = eokafka("consume", topic, "--from", "2030-01-01T00:00:00Z", "--until-end",
                    bootstrap=kafka_bootstrap)  # fmt: skip
    assert (newer.code, newer.out) == (0, ""), newer  # every record is older
    at_end = eokafka("consume", topic, "--from", "end", "--until-end", bootstrap=kafka_bootstrap)
    assert (at_end.code, at_end.out) == (0, ""), at_end


def test_consume_shows_committed_records_only(kafka_bootstrap: str) -> None:
    topic = unique_name("cli-txn")
    create_topic(kafka_bootstrap, topic, 1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": topic})
    producer.init_transactions(30)
    for value, commit in ((b'"kept"', True), (b'"aborted"', False), (b'"also kept"', True)):
        producer.begin_transaction()
        producer.produce(topic, value, b"k")
        producer.flush(30)  # written before the abort: an aborted record in the log
        producer.commit_transaction(30) if commit else producer.abort_transaction(30)
    # 3 records, 3 markers: the last marker is written after commit_transaction returns.
    wait_for(lambda: end_offsets(kafka_bootstrap, topic)[0] == 6, 30, "the last marker")
    done = eokafka("consume", topic, "--until-end", bootstrap=kafka_bootstrap)
    assert (done.code, done.err) == (0, ""), done
    assert [(r["value"], r["offset"]) for r in _lines(done.out)] == [("kept", 0), ("also kept", 4)]
    raw = eokafka("consume", topic, "--until-end", "--read-uncommitted", bootstrap=kafka_bootstrap)
    assert [r["value"] for r in _lines(raw.out)] == ["kept", "aborted", "also kept"], raw
    b64 = eokafka("consume", topic, "--until-end", "--max", "1", "--value-serde", "base64",
                  bootstrap=kafka_bootstrap)  # fmt: skip
    assert _lines(b64.out)[0]["value"] == "ImtlcHQi"  # base64 of "kept" with its quotes


def test_bad_input_sends_nothing_and_is_one_line(kafka_bootstrap: str) -> None:
    topic = unique_name("cli-bad")
    create_topic(kafka_bootstrap, topic, 2)
    cases = {
        '{"key": "a", "value": 1}\nnot json\n': "error: stdin line 2: not JSON (Expecting "
        "value: line 1 column 1 (char 0))",
        '{"key": 5, "value": 1}\n': "error: stdin line 1: the key does not fit --key-serde "
        "string: it takes a JSON string, not int",
        '{"value": 1, "partition": 2}\n': f"error: stdin line 1: topic '{topic}' has "
        "partitions 0..1, not 2",
        '{"key": "a"}\n': 'error: stdin line 1: expected an object with "value" (and '
        'optionally "key", "headers", "partition", "timestamp"), e.g. {"key": "alice", '
        '"value": {"qty": 1}}',
    }
    for stdin, message in cases.items():
        done = eokafka("produce", topic, bootstrap=kafka_bootstrap, stdin=stdin)
        assert (done.code, done.out, done.error_lines) == (1, "", [message]), done
    assert end_offsets(kafka_bootstrap, topic) == {0: 0, 1: 0}  # nothing was sent

    missing = unique_name("cli-missing")
    for args in (("produce", missing), ("consume", missing)):
        done = eokafka(*args, bootstrap=kafka_bootstrap, stdin='{"value": 1}\n')
        assert done.code == 1 and len(done.error_lines) == 1, done
        assert done.err.startswith(f"error: topic '{missing}' does not exist: create it with "
                                   f"`eokafka topics create {missing} --partitions N`")  # fmt: skip
    checks = {
        ("--from", "yesterday"): "error: --from 'yesterday': give an ISO 8601 date-time such "
        "as 2026-05-01T12:00:00Z",
        ("--from", "7"): f"error: --from 7: partition 0 of '{topic}' holds offsets 0..0",
        ("--partition", "5"): f"error: topic '{topic}' has partitions 0..1, not 5",
        ("--value-serde", "xml"): "error: format 'xml': choose one of json, string, base64, app",
        ("-c", "no.such.key=1"): "error: librdkafka rejected the configuration: No such "
        'configuration property: "no.such.key" (librdkafka keys come from --config, '
        "EOKAFKA_CONFIG or App(config=...); see librdkafka's CONFIGURATION.md)",
    }
    for args, message in checks.items():
        done = eokafka("consume", topic, "--until-end", *args, bootstrap=kafka_bootstrap)
        assert (done.code, done.out, done.error_lines) == (1, "", [message]), done
