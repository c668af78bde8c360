"""A task's record queue: timestamp order across its inputs, waits, the cap, commit offsets."""

from __future__ import annotations

from confluent_kafka import TIMESTAMP_CREATE_TIME, Message

from eokafka.runtime.tasks.record_queue import RecordQueue
from eokafka.runtime.tasks.task import Task

L, R = ("left", 0), ("right", 0)
INPUTS = (L, R)


def _msgs(tp: tuple[str, int], stamps: list[int], first: int = 0) -> list[Message]:
    return [
        Message(topic=tp[0], partition=tp[1], offset=first + i, value=b"v",
                timestamp=(TIMESTAMP_CREATE_TIME, ts))
        for i, ts in enumerate(stamps)
    ]  # fmt: skip


def _flat(runs: list[tuple[tuple[str, int], list[Message]]]) -> list[tuple[str, list[int]]]:
    return [(tp[0], [m.timestamp()[1] for m in msgs]) for tp, msgs in runs]


def test_releases_the_oldest_head_first_and_waits_for_an_empty_input_not_at_its_end() -> None:
    q = RecordQueue(idle_ms=0)
    q.add(L, _msgs(L, [1, 5, 9]))
    q.add(R, _msgs(R, [2, 3, 10]))
    assert _flat(q.release(INPUTS, (), now=0.0)) == [
        ("left", [1]),
        ("right", [2, 3]),
        ("left", [5, 9]),
    ]  # then left is empty and not at its end: its next records may be older than 10
    assert q.release(INPUTS, (), now=0.0) == []
    assert q.lagging == (L, 0.0)
    q.end(L)
    assert _flat(q.release(INPUTS, (), now=1.0)) == [("right", [10])]
    assert q.lagging == (R, 1.0)  # now right is the one empty and not at its end


def test_records_out_of_order_within_a_partition_keep_their_partition_order() -> None:
    q = RecordQueue(idle_ms=0)
    q.add(L, _msgs(L, [5, 2, 8]))
    q.add(R, _msgs(R, [6]))
    q.end(L)
    q.end(R)
    assert _flat(q.release(INPUTS, (), now=0.0)) == [
        ("left", [5, 2]),
        ("right", [6]),
        ("left", [8]),
    ]


def test_an_input_a_bounded_run_ended_is_not_waited_for() -> None:
    q = RecordQueue(idle_ms=0)
    q.add(R, _msgs(R, [4, 7]))
    assert q.release(INPUTS, (), now=0.0) == []
    assert _flat(q.release(INPUTS, {L: 12}, now=0.0)) == [("right", [4, 7])]


def test_new_records_take_an_input_off_its_end() -> None:
    q = RecordQueue(idle_ms=0)
    q.end(L)
    q.add(L, _msgs(L, [3]))
    q.add(R, _msgs(R, [1, 2, 5]))
    assert _flat(q.release(INPUTS, (), now=0.0)) == [("right", [1, 2]), ("left", [3])]


def test_an_idle_wait_holds_records_for_an_input_at_its_end_that_long() -> None:
    q = RecordQueue(idle_ms=500)
    q.end(L)
    q.add(R, _msgs(R, [1, 2]))
    assert q.release(INPUTS, (), now=10.0) == []
    assert abs((q.wait_s(10.2) or 0) - 0.3) < 1e-9
    assert q.release(INPUTS, (), now=10.4) == []
    assert _flat(q.release(INPUTS, (), now=10.5)) == [("right", [1, 2])]
    q.add(R, _msgs(R, [3], first=2))
    assert _flat(q.release(INPUTS, (), now=10.6)) == [("right", [3])]  # still idle since 10.0
    q.add(L, _msgs(L, [4]))
    q.end(L)
    q.add(R, _msgs(R, [6], first=3))
    assert _flat(q.release(INPUTS, (), now=11.0)) == [("left", [4])]
    assert q.release(INPUTS, (), now=11.0) == []  # left's idle wait starts again
    assert _flat(q.release(INPUTS, (), now=11.5)) == [("right", [6])]


def test_a_full_partition_is_paused_until_it_drains_below_half() -> None:
    q = RecordQueue(idle_ms=0, cap=4)
    q.add(L, _msgs(L, [1, 2, 3, 4, 5]))
    assert q.full() == [L]
    assert q.full() == []  # paused once
    assert q.drained() == []
    assert _flat(q.release(INPUTS, (), now=0.0)) == []  # right empty, not at its end
    q.end(R)
    assert _flat(q.release(INPUTS, (), now=0.0)) == [("left", [1, 2, 3, 4, 5])]
    assert q.drained() == [L]
    assert q.unpause() == []


def test_a_commit_goes_to_the_first_queued_record_and_a_rewind_drops_the_queue() -> None:
    task = Task(0, frozenset({"left", "right"}), (), queue=RecordQueue(idle_ms=0))
    assert task.queue is not None
    task.queue.add(L, _msgs(L, [1, 2], first=40))
    task.queue.add(R, _msgs(R, [5], first=7))
    assert _flat(task.queue.release(INPUTS, (), now=0.0)) == [("left", [1, 2])]
    assert task.resume_offset(L) is None  # all processed: the consumer's position
    assert task.resume_offset(R) == 7
    task.held[R] = 9  # a bounded run's hold further on
    assert task.resume_offset(R) == 7
    task.held[R] = 5
    assert task.resume_offset(R) == 5
    task.queue.full()
    task.abort()
    assert task.queue.first_offset(R) is None and task.queue.release(INPUTS, (), 0.0) == []
    task.remove_input(R)
    assert task.queue.queues == {}


def test_a_limit_releases_no_more_records_and_keeps_the_rest_in_order() -> None:
    """An abort loop narrows transactions down to one record: the queue must not hand a
    transaction more than that."""
    q = RecordQueue(idle_ms=0)
    q.add(L, _msgs(L, [1, 2, 6]))
    q.add(R, _msgs(R, [3, 4]))
    q.end(L)
    q.end(R)
    got = []
    while True:
        runs = q.release(INPUTS, (), now=0.0, limit=1)
        if not runs:
            break
        assert sum(len(m) for _, m in runs) == 1
        got.extend(_flat(runs))
    assert got == [("left", [1]), ("left", [2]), ("right", [3]), ("right", [4]), ("left", [6])]
    q.add(L, _msgs(L, [7, 8, 9], first=3))
    assert _flat(q.release(INPUTS, (), now=0.0, limit=2)) == [("left", [7, 8])]
