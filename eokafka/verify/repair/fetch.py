"""Read again the Kafka records a repair writes from (or whose key it needs), by place."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from eokafka.errors import EokafkaError
from eokafka.verify.progress import Progress, tracked
from eokafka.verify.readers import Message, kafka_records
from eokafka.verify.records import Loc


def fetch(
    bootstrap: str, topic: str, locs: Iterable[Loc], progress: Progress
) -> dict[Loc, Message]:
    """The committed records of ``topic`` at ``locs`` (partition, offset).

    Each partition is read from the first place wanted to the last. A place not found (the
    topic's retention deleted it since the check) is an error naming it.
    """
    wanted = set(locs)
    if not wanted:
        return {}
    start: dict[int, int] = {}
    stop: dict[int, int] = {}
    for p, o in wanted:
        start[p] = min(o, start.get(p, o))
        stop[p] = max(o + 1, stop.get(p, o + 1))
    total = sum(stop[p] - start[p] for p in start)
    found = {
        (m.partition, m.offset): m
        for m in tracked(kafka_records(bootstrap, topic, start, stop), progress,
                         f"fetching records of {topic}", total)
        if (m.partition, m.offset) in wanted
    }
    lost = sorted(wanted - found.keys())
    if lost:
        p, o = lost[0]
        raise EokafkaError(
            f"{len(lost)} records of {topic} are gone since the check, e.g. {topic}[{p}]@{o} "
            "(retention or compaction): check again"
        )
    return found


def value_of(message: Message) -> Any:
    """A source record's JSON value (the check read it as a JSON object)."""
    assert message.value is not None
    return json.loads(message.value)
