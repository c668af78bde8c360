"""The line a running sink has synced up to, so that a check or repair never races it.

Invariant 12 makes the Kafka commit the decision: a source record below the offset the
sink's consumer group committed is done for good (the sink never takes it up again), one at
or after it may still be written. So a check with ``--group`` expects at the destination only
the records below the group's committed offsets, taken *before* the destination is read;
the rest are in flight. Two sinks make records visible a little after their Kafka commit, and
lower the line or wait for them:

* a two-phase ``PostgresSink`` runs ``COMMIT PREPARED`` after the Kafka commit (or, after a
  crash, the app's recovery does): the check waits, after taking the line and before its
  snapshot, until the prepared transactions that hold a lock on the table then have ended;
* a ``FileSink`` renames a part into place only when it rolls: records from the first
  offset of any in-progress part on are not visible yet, so the line drops to it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from eokafka.errors import ConfigError, EokafkaError
from eokafka.verify.fileparts import inprogress_starts
from eokafka.verify.readers import client_config
from eokafka.verify.records import Loc

_TIMEOUT = 30.0
_PREPARED_HOLDING = """
SELECT p.gid FROM pg_prepared_xacts p
JOIN pg_locks x ON x.locktype = 'transactionid' AND x.transactionid = p.transaction
JOIN pg_locks l ON l.locktype = 'relation' AND l.virtualtransaction = x.virtualtransaction
WHERE p.database = current_database() AND l.relation = %s::regclass
ORDER BY p.gid
"""


class NotNow(EokafkaError):
    """The check can't be made right now (a prepared transaction holds the table)."""


@dataclass
class Line:
    """Per source partition, the offset below which every record must be at the destination."""

    group: str
    topic: str
    committed: dict[int, int]
    offsets: dict[int, int] = field(default_factory=dict)
    because: dict[int, str] = field(default_factory=dict)  # why a line is below the commit

    def __post_init__(self) -> None:
        if not self.offsets:
            self.offsets = dict(self.committed)

    def in_flight(self, loc: Loc) -> bool:
        """Whether the source record at ``loc`` (partition, offset) is not expected yet."""
        return loc[1] >= self.offsets.get(loc[0], 0)

    def lower(self, partition: int, offset: int, because: str) -> None:
        if offset < self.offsets.get(partition, 0):
            self.offsets[partition] = offset
            self.because[partition] = because

    def as_list(self, ends: dict[int, int]) -> list[dict[str, object]]:
        return [
            {"partition": p, "offset": self.offsets.get(p, 0), "end": ends.get(p, 0),
             "committed": self.committed.get(p, 0),
             **({"below_commit_because": self.because[p]} if p in self.because else {})}
            for p in sorted(ends)
        ]


def committed_line(bootstrap: str, group: str, topic: str, partitions: list[int]) -> Line:
    """The offsets ``group`` committed on ``topic``; a group that committed none is an error
    (a mistyped group would make every record in flight and the check pass)."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    admin = AdminClient(client_config(bootstrap))
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
    try:
        future = admin.list_consumer_group_offsets([request], request_timeout=_TIMEOUT)[group]
        answer = future.result(_TIMEOUT)
    except KafkaException as exc:
        raise ConfigError(f"the offsets of group {group!r}: {exc.args[0]}") from exc
    committed = {
        tp.partition: tp.offset
        for tp in answer.topic_partitions or []
        if tp.error is None and tp.offset >= 0
    }
    if not committed:
        raise ConfigError(
            f"group {group!r} has committed no offset on topic {topic!r}: is it the group "
            "(application id) of the sink that reads it?"
        )
    return Line(group, topic, {p: committed.get(p, 0) for p in partitions})


def lower_for_file_parts(line: Line, folder: str) -> None:
    """Records from an in-progress part's first offset on are not visible yet."""
    for (topic, partition), first in inprogress_starts(folder).items():
        if topic == line.topic:
            line.lower(partition, first, f"an in-progress part from offset {first}")


def wait_for_prepared(dsn: str, table: str, wait: float) -> None:
    """Wait until the prepared transactions holding ``table`` now have ended.

    A two-phase sink's transaction is prepared before its Kafka commit and committed after
    it; its rows are visible only then. Any record below a line taken before this call was
    prepared before it too, so once these transactions end, its row is visible.
    """
    import psycopg
    from psycopg import sql

    name = sql.Identifier(*table.split("."))
    deadline = time.monotonic() + wait
    with psycopg.connect(dsn, autocommit=True) as conn:
        relation = name.as_string(conn)
        try:
            holding = {r[0] for r in conn.execute(_PREPARED_HOLDING, (relation,))}
        except psycopg.errors.UndefinedTable as exc:
            raise ConfigError(f"PostgreSQL: {exc}".strip()) from exc
        while holding:
            left = {r[0] for r in conn.execute(_PREPARED_HOLDING, (relation,))}
            holding &= left
            if not holding:
                return
            if time.monotonic() >= deadline:
                raise NotNow(
                    f"prepared transaction(s) {', '.join(sorted(holding))} still hold table "
                    f"{table} after {wait:g} s: rows they hold may be committed yet. The app "
                    "resolves them when one of its workers takes their partitions again "
                    "(start it if it is stopped); check again then, or wait longer "
                    "(--prepared-wait)"
                )
            time.sleep(0.05)  # poll: a running sink ends them within a commit
