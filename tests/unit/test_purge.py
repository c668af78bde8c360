"""The repartition purge: what it asks to delete, and how often (the broker part is in
tests/integration/test_internal_topics.py)."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from eokafka.runtime.commit import purge as purge_module
from eokafka.runtime.commit.purge import RepartitionPurge


class _Admin:
    """Records DeleteRecords requests; the test resolves their futures."""

    def __init__(self) -> None:
        self.requests: list[list[tuple[str, int, int]]] = []
        self.futures: list[Future[object]] = []

    def delete_records(self, tps: list[TopicPartition], **_: Any) -> dict[Any, Future[object]]:
        self.requests.append([(tp.topic, tp.partition, tp.offset) for tp in tps])
        out: dict[Any, Future[object]] = {}
        for tp in tps:
            future: Future[object] = Future()
            self.futures.append(future)
            out[tp] = future
        return out


def test_purges_committed_repartition_positions_at_most_once_per_interval(
    monkeypatch: Any,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(purge_module.time, "monotonic", lambda: now[0])
    admin = _Admin()
    purge = RepartitionPurge(admin, {"app-x-repartition"}, interval=30)  # type: ignore[arg-type]
    positions = [TopicPartition("app-x-repartition", 0, 10), TopicPartition("input", 0, 99)]
    purge.committed(positions)
    assert admin.requests == []  # not before one interval after the start
    now[0] += 30
    purge.committed(positions)
    assert admin.requests == [[("app-x-repartition", 0, 10)]]  # only repartition topics
    for f in admin.futures:
        f.set_result(None)
    now[0] += 1
    purge.committed([TopicPartition("app-x-repartition", 0, 20)])
    assert len(admin.requests) == 1  # within the interval: held back
    now[0] += 30
    purge.committed([])
    assert admin.requests[-1] == [("app-x-repartition", 0, 20)]  # the latest position
    admin.futures[-1].set_exception(KafkaException(KafkaError(KafkaError._TIMED_OUT)))
    now[0] += 30
    purge.committed([])
    assert admin.requests[-1] == [("app-x-repartition", 0, 20)]  # a failure is retried
    admin.futures[-1].set_result(None)
    now[0] += 30
    purge.committed([])
    assert len(admin.requests) == 3  # nothing new committed: nothing asked
