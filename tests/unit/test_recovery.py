"""Where a re-sync resumes, and the errors that say why it can't; the broker side is in
tests/integration/test_broker_faults.py."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from eokafka.errors import EokafkaError
from eokafka.runtime.commit.errors import is_indefinite
from eokafka.runtime.tasks.offsets import CommittedOffsets
from tests.tcp_proxy import _is_commit


class _Coordinator:
    """Answers committed() like a consumer would: offsets, or a timeout while unreachable."""

    def __init__(self, offsets: dict[tuple[str, int], int], down: bool = False) -> None:
        self.offsets = offsets
        self.down = down

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        if self.down:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Local: Timed out"))
        return [
            TopicPartition(
                tp.topic, tp.partition, self.offsets.get((tp.topic, tp.partition), -1001)
            )
            for tp in partitions
        ]


def test_committed_offsets_win_and_never_committed_partitions_take_the_reset_position() -> None:
    pending = CommittedOffsets("unknown-outcome", "app")
    coordinator = _Coordinator({("in", 0): 42})
    found = pending.read_offsets(
        coordinator,  # type: ignore[arg-type]
        [TopicPartition("in", 0), TopicPartition("in", 1)],
        {("in", 0): 7, ("in", 1): -2},
    )
    assert found is not None
    assert [(tp.partition, tp.offset) for tp in found] == [(0, 42), (1, -2)]


def test_an_unreachable_coordinator_is_retried_then_named() -> None:
    coordinator = _Coordinator({}, down=True)
    parts = [TopicPartition("in", 3)]
    assert CommittedOffsets("fatal", "app").read_offsets(coordinator, parts, {}) is None  # type: ignore[arg-type]
    late = CommittedOffsets("fatal", "app", patience=0)
    with pytest.raises(EokafkaError, match=r"group 'app' for in\[3\]"):
        late.read_offsets(coordinator, parts, {})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "indefinite"),
    [
        (KafkaError._TIMED_OUT, True),
        (KafkaError._TRANSPORT, True),
        (KafkaError._MSG_TIMED_OUT, True),
        (KafkaError.REQUEST_TIMED_OUT, True),
        (KafkaError.CONCURRENT_TRANSACTIONS, False),
        (KafkaError.INVALID_PRODUCER_EPOCH, False),
    ],
)
def test_indefinite_errors_are_the_ones_whose_request_may_still_land(
    code: int, indefinite: bool
) -> None:
    assert is_indefinite(KafkaError(code)) is indefinite


def test_the_proxy_tells_an_end_txn_commit_from_an_abort() -> None:
    body = b"\x00\x03tid" + b"\x00" * 8 + b"\x00\x01"
    assert _is_commit(body + b"\x01", api_version=1)
    assert not _is_commit(body + b"\x00", api_version=1)
    assert _is_commit(body + b"\x01\x00", api_version=3)  # then an empty tag buffer
