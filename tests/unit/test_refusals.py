"""Checks before producing (limits.py), dead-letter truncation, and the abort-loop detector."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from eokafka.errors import OutputRefusedError, PoisonRecordError, StalledError
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.commit.abort_loop import AbortLoop, classify, marks_ahead
from eokafka.runtime.commit.dead_letters import fit_dead_letter
from eokafka.runtime.commit.limits import OutputLimits, record_size
from eokafka.state import InMemoryBackend, Store, StoreRecordTooLargeError

MAX = 10_000


@pytest.fixture
def producer() -> Iterator[Producer]:
    """A producer that never reaches a broker: produce() checks sizes locally."""
    p = Producer({"bootstrap.servers": "127.0.0.1:1", "message.max.bytes": MAX, "log_level": 0})
    yield p
    p.purge()
    p.flush(1)


def _librdkafka_accepts(p: Producer, key: bytes, value: bytes, headers: list) -> bool:
    try:
        p.produce("t", value, key, headers=headers)
    except KafkaException as exc:
        assert exc.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
        return False
    return True


@pytest.mark.parametrize(
    "headers",
    [[], [("a", b"1")], [("abc", b"12345"), ("d", None)], [("h" * 70, "é" * 40), ("x", b"")]],
)
def test_record_size_draws_the_line_where_librdkafka_does(
    producer: Producer, headers: list
) -> None:
    limits = OutputLimits({"message.max.bytes": MAX}, lambda t: {})
    limit = limits.learn("t").max_bytes
    key = b"key"
    room = limit - record_size(key, b"", headers)
    fits, over = b"v" * room, b"v" * (room + 1)
    assert limits.refusal("t", key, fits, headers) is None
    assert _librdkafka_accepts(producer, key, fits, headers)
    assert limits.refusal("t", key, over, headers) is not None
    assert not _librdkafka_accepts(producer, key, over, headers)


def test_topic_limits_and_compaction_are_read_once_per_topic() -> None:
    reads: list[str] = []
    configs = {
        "small": {"max.message.bytes": "1000", "cleanup.policy": "delete"},
        "compacted": {"max.message.bytes": "2000000", "cleanup.policy": "compact,delete"},
        "zipped": {"max.message.bytes": "1000", "compression.type": "gzip"},
    }

    def read(topic: str) -> dict[str, str]:
        reads.append(topic)
        return configs[topic]

    limits = OutputLimits({}, read)
    for topic in ("small", "compacted", "zipped", "small"):
        limits.learn(topic)
    assert reads == ["small", "compacted", "zipped"]
    assert limits.guarded == {"small", "compacted"}
    reason = limits.refusal("small", b"k", b"v" * 1000, None)
    assert reason is not None and "max.message.bytes=1000 of topic 'small'" in reason
    assert limits.refusal("small", b"k", b"v" * 900, None) is None
    assert "INVALID_RECORD" in (limits.refusal("compacted", None, b"v", None) or "")
    assert limits.refusal("compacted", b"k", None, None) is None  # a tombstone is fine
    # A topic that recompresses: the size the broker checks is unknown, so not checked here.
    assert limits.refusal("zipped", b"k", b"v" * 5000, None) is None


def test_a_changelog_limit_does_not_guard_every_output_but_a_send_to_it_does() -> None:
    configs = {"app-counts-changelog": {"cleanup.policy": "compact"}, "out": {}}
    limits = OutputLimits({}, lambda topic: configs[topic])
    assert limits.record_limit("app-counts-changelog") == limits.producer_max
    limits.learn("out")
    assert limits.guarded == set()  # outputs to "out" skip the per-record check
    limits.learn("app-counts-changelog")  # a processor sends there after all: checked
    assert limits.guarded == {"app-counts-changelog"}
    assert "INVALID_RECORD" in (limits.refusal("app-counts-changelog", None, b"v", None) or "")


def test_a_dead_letter_record_is_cut_to_fit_with_its_headers_kept() -> None:
    headers = [("own", b"h"), ("eokafka.error.stage", b"process")]
    key, value = b"key", b"v" * 5000
    assert fit_dead_letter(key, value, headers, 6000) == (key, value, headers)
    k, v, h = fit_dead_letter(key, value, headers, 1000)
    assert record_size(k, v, h) == 1000
    assert k == key and value.startswith(v)
    found = dict(h)
    assert found["own"] == b"h" and found["eokafka.truncated"] == b"value"
    assert found["eokafka.original.value.size"] == b"5000"
    k, v, h = fit_dead_letter(b"k" * 3000, value, headers, 1000)
    assert record_size(k, v, h) <= 1000 and v == b""
    assert dict(h)["eokafka.truncated"] == b"value,key"


def test_a_store_write_too_large_for_the_changelog_fails_at_put() -> None:
    store = Store("s", InMemoryBackend())
    store.max_record_bytes = 100
    store.put("k", "x" * 50)
    with pytest.raises(StoreRecordTooLargeError, match="store 's', key 'k'"):
        store.put("k", "x" * 200)
    assert store.get("k") == "x" * 50  # the refused write changed nothing
    store.put("k", None)  # a delete always fits


def _err(code: int) -> KafkaError:
    return KafkaError(code, "test")


def _records(offsets: range) -> list:
    class Msg:
        def __init__(self, offset: int) -> None:
            self._offset = offset

        def topic(self) -> str:
            return "in"

        def partition(self) -> int:
            return 0

        def offset(self) -> int:
            return self._offset

        def error(self) -> None:
            return None

    return [Msg(o) for o in offsets]


def test_error_classes() -> None:
    assert classify(_err(KafkaError.MSG_SIZE_TOO_LARGE)) == "record"
    assert classify(_err(KafkaError.INVALID_RECORD)) == "record"
    assert classify(_err(KafkaError._TIMED_OUT)) == "transient"
    assert classify(_err(KafkaError._STATE)) == "unknown"
    assert classify(None) == "unknown"


def test_narrowing_halves_until_one_record_is_alone_then_blames_it() -> None:
    loop = AbortLoop(WorkerMetrics("a", "i", "0"))
    refused = _err(KafkaError.INVALID_RECORD)
    assert loop.aborted(refused, 64, lambda: {("in", 0): 64}) is None
    caps = [loop.cap]
    while loop.cap and loop.cap > 1:
        loop.note(_records(range(loop.cap)))
        assert loop.aborted(refused, loop.cap, dict) is None
        caps.append(loop.cap)
    assert caps == [32, 16, 8, 4, 2, 1]
    loop.note(_records(range(40, 41)))
    blame = loop.aborted(refused, 1, dict)
    assert blame is not None and blame.record == ("in", 0, 40)
    marks: dict = {}
    blame.pin(marks, "skip", "copy")
    assert isinstance(marks[("in", 0, 40)][2], OutputRefusedError)
    with pytest.raises(StalledError, match=r"in\[0\]@40"):
        blame.pin(marks, "skip", "copy")  # its own policy outcome was refused too
    with pytest.raises(PoisonRecordError, match=r"in\[0\]@40 \(produce\).*INVALID_RECORD"):
        blame.pin({}, "fail", "copy")
    loop.committed({("in", 0): 41}, progressed=True)
    assert loop.cap == 2  # grows back after progress
    loop.committed({("in", 0): 64}, progressed=True)
    assert loop.cap is None and loop.streak == 0  # past the refused range: done
    assert marks_ahead(marks, {("in", 0): 41}) == {}


def test_a_lone_record_failing_with_an_unknown_error_stops_the_worker() -> None:
    loop = AbortLoop(WorkerMetrics("a", "i", "0"))
    denied = _err(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    blame = None
    for _ in range(20):
        loop.note(_records(range(7, 8)))
        blame = loop.aborted(denied, 1, dict)
        if blame is not None:
            break
    assert blame is not None and loop.streak == 6  # 3 to start narrowing, then 3 alone
    with pytest.raises(StalledError, match=r"in\[0\]@7.*TOPIC_AUTHORIZATION_FAILED"):
        blame.pin({}, "skip", "copy")  # never skipped on an error that does not blame it


def test_transient_errors_never_blame_a_record() -> None:
    loop = AbortLoop(WorkerMetrics("a", "i", "0"))
    for _ in range(50):
        loop.note(_records(range(1)))
        assert loop.aborted(_err(KafkaError._TIMED_OUT), 1, dict) is None
    assert loop.cap is None and loop.streak == 50
