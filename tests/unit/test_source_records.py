"""SourceSender's verdicts: size checks before produce, the policy, marks of broker refusals."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from confluent_kafka import KafkaError

from eokafka.config import Settings
from eokafka.errors import SourceRecordError, StalledError
from eokafka.metrics import TxnTally
from eokafka.runtime.commit.limits import OutputLimits
from eokafka.runtime.commit.participant import Abort
from eokafka.runtime.commit.source_records import SourceSender
from eokafka.serdes import Json, String
from eokafka.source import Feed, Origin, Read, Unreadable


class _Connector:
    name = "files"


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, Any, Any]] = []
        self.callbacks: list[partial[None]] = []

    def __call__(
        self, topic: str, value: Any, key: Any, partition: int, timestamp: int = 0,
        headers: Any = None, report: partial[None] | None = None,
    ) -> None:  # fmt: skip
        self.sent.append((topic, key, value, headers))
        if report is not None:
            self.callbacks.append(report)


ABORT = Abort("test", True, 0, None)  # what the owner tells its participants of an abort
FEED = Feed(_Connector(), "out", String(), Json())  # type: ignore[arg-type]


def _origin(line: int) -> Origin:
    return Origin("files", (("file", "/in/a.jsonl"), ("line", str(line)), ("byte", "0")))


def _sender(policy: str) -> tuple[SourceSender, _Producer, TxnTally]:
    settings = Settings(application_id="app", on_error=policy)
    limits = OutputLimits({"message.max.bytes": 1000}, lambda topic: {})
    tally, producer = TxnTally(), _Producer()
    return SourceSender(settings, limits, tally, producer), producer, tally


def test_a_record_too_large_is_dead_lettered_without_producing_it() -> None:
    sender, producer, tally = _sender("dead-letter")
    sender.send(FEED, Read("k", {"pad": "x" * 2000}, _origin(3)))
    sender.send(FEED, Unreadable(b"\xff", _origin(4), ValueError("not utf-8")))
    sender.send(FEED, Read("k", {"id": 1}, _origin(5)))
    assert [s[0] for s in producer.sent] == ["app-dlq", "app-dlq", "out"]
    headers = dict(producer.sent[0][3])
    assert headers["eokafka.error.class"] == b"OutputRefusedError"
    assert headers["eokafka.source.line"] == b"3" and headers["eokafka.source.name"] == b"files"
    assert headers["eokafka.truncated"] == b"value"
    assert producer.sent[1][2] == b"\xff"
    assert tally.dead_lettered["out"] == 2 and tally.produced["out"] == 1


def test_fail_names_the_origin() -> None:
    sender, _, _ = _sender("fail")
    with pytest.raises(SourceRecordError, match=r"/in/a.jsonl line 4 \(byte 0\) \(read\)"):
        sender.send(FEED, Unreadable(b"{", _origin(4), ValueError("bad json")))


def test_a_refused_batch_is_narrowed_down_to_its_record() -> None:
    """The broker refuses the batch: every record of it reports the error. Replayed one per
    transaction, the innocent go through and the one refused alone is set aside."""
    sender, producer, tally = _sender("skip")
    for n in range(3):
        sender.send(FEED, Read("k", {"id": n}, _origin(n)))
    for callback in producer.callbacks:
        callback(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None)
    sender.aborted(ABORT)
    assert not sender.marks and sender.narrowing
    producer.sent.clear()
    sender.send(FEED, Read("k", {"id": 0}, _origin(0)))
    sender.committed([])
    sender.send(FEED, Read("k", {"id": 1}, _origin(1)))
    producer.callbacks[-1](KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None)
    sender.aborted(ABORT)
    assert list(sender.marks) == [_origin(1)]
    sender.send(FEED, Read("k", {"id": 1}, _origin(1)))  # the replay: to the policy
    sender.committed([])
    sender.send(FEED, Read("k", {"id": 2}, _origin(2)))
    sender.committed([])
    assert not sender.narrowing and not sender.marks and not sender.suspects
    assert [v for _, _, v, _ in producer.sent] == [b'{"id":0}', b'{"id":1}', b'{"id":2}']
    assert tally.skipped["out"] == 1


def test_transient_failures_blame_nobody_and_unknown_ones_stop() -> None:
    sender, producer, _ = _sender("skip")
    for _ in range(5):
        sender.send(FEED, Read("k", {"id": 1}, _origin(1)))
        producer.callbacks[-1](KafkaError(KafkaError._MSG_TIMED_OUT), None)
        sender.aborted(ABORT)
    assert not sender.marks
    with pytest.raises(StalledError, match="line 1"):
        for _ in range(3):
            sender.send(FEED, Read("k", {"id": 1}, _origin(1)))
            producer.callbacks[-1](KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), None)
            sender.aborted(ABORT)


def test_fail_stops_on_a_refused_delivery() -> None:
    sender, producer, _ = _sender("fail")
    sender.send(FEED, Read("k", {"id": 1}, _origin(7)))
    producer.callbacks[0](KafkaError(KafkaError.INVALID_RECORD), None)
    with pytest.raises(SourceRecordError, match="line 7"):
        sender.aborted(ABORT)
