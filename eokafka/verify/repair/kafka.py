"""Repair a Kafka topic in one Kafka transaction.

A log can only grow: missing records are appended (the source record's key and value,
partitioned by the key as the app's producer does), while duplicates and wrong copies are
left and reported. A compacted topic is read as a table (the last record of each key), so
there a wrong copy is fixed by writing the right value last under its key, and a copy to
remove gets a tombstone.

The transactional id is the same for every repair of a topic, and the producer starts
before the check: a second repair fences the first, so two never both append a record.
The sink never writes a record below its committed offsets again (``eokafka.verify.line``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import KafkaException, Producer

from eokafka.client_configs import DEFAULT_PARTITIONER
from eokafka.errors import EokafkaError
from eokafka.verify import Checked, CheckOptions
from eokafka.verify.line import NotNow
from eokafka.verify.progress import Progress
from eokafka.verify.readers import Message, client_config
from eokafka.verify.records import Loc
from eokafka.verify.repair.fetch import fetch
from eokafka.verify.repair.plan import Capabilities, Done, Plan

_TIMEOUT = 60.0
_LOG = Capabilities(
    remove=False, fix=False,
    why_not="a Kafka log can't delete or change a record (a right copy appended would be "
    "one more duplicate); compacted topics can be repaired",
)
_COMPACTED = Capabilities(remove=True, fix=True)


class KafkaRepair:
    """Plans and applies the changes to ``kafka:<topic>``."""

    def __init__(self, opts: CheckOptions, compacted: bool) -> None:
        self.opts = opts
        self.topic = opts.target.where
        self.can = _COMPACTED if compacted else _LOG
        self._producer: Producer | None = None
        self._source: dict[Loc, Message] = {}
        self._copies: dict[Loc, Message] = {}

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        producer = Producer({
            **client_config(self.opts.bootstrap),
            "transactional.id": f"eokafka-repair-{self.topic}",
            "partitioner": DEFAULT_PARTITIONER,
            "transaction.timeout.ms": int(_TIMEOUT * 1000),
        })
        try:
            producer.init_transactions(_TIMEOUT)
        except KafkaException as exc:
            raise EokafkaError(f"repair of {self.topic}: {exc.args[0]}") from exc
        self._producer = producer
        try:
            yield
        finally:
            self._producer = None
            producer.flush(_TIMEOUT)

    def unguarded(self) -> None:
        """A Kafka sink's writes are visible with its commit: nothing is on its way."""

    def prepare(self, plan: Plan, checked: Checked, progress: Progress) -> None:
        hanging = [t for t in checked.report.open_transactions if t["topic"] == self.topic]
        if hanging and plan.changes:
            t = hanging[0]
            raise NotNow(
                f"an open transaction on {self.topic}[{t['partition']}] hides the records "
                f"after offset {t['last_stable_offset']}: a repair could copy some of them "
                "again. Check again once it has ended (or been aborted)"
            )
        writes = plan.of("add") + plan.of("fix")
        self._source = fetch(self.opts.bootstrap, self.opts.source,
                             [i.source_loc for i in writes if i.source_loc], progress)
        if self.can.remove:
            for item in plan.of("add"):
                assert item.source_loc is not None
                if self._source[item.source_loc].key is None:
                    item.leave("the source record has no key, and a compacted topic takes "
                               "only keyed records")
            self._copies = fetch(self.opts.bootstrap, self.topic,
                                 [i.loc for i in plan.items
                                  if i.action in ("remove", "fix") and i.loc], progress)
        counts = [(len(plan.of(a)), w) for a, w in
                  (("add", "append"), ("fix", "write the right value of"),
                   ("remove", "tombstone"))]
        said = ", ".join(f"{w} {n}" for n, w in counts if n)
        if said:
            plan.steps.append(f"in one Kafka transaction on {self.topic}: {said}")

    def apply(self, plan: Plan, progress: Progress) -> Done:
        producer = self._producer
        assert producer is not None, "apply() outside exclusive()"
        step = progress.step(f"repairing {self.topic}", plan.changes)
        failed: list[str] = []

        def delivered(err: object, _msg: object) -> None:
            if err is not None:
                failed.append(str(err))

        try:
            producer.begin_transaction()
            # Tombstones first: a record added under the key of one removed stays.
            for item in plan.of("remove") + plan.of("fix") + plan.of("add"):
                if item.action == "add":
                    assert item.source_loc is not None
                    m = self._source[item.source_loc]
                    key, value, partition = m.key, m.value, -1
                else:
                    assert item.loc is not None
                    copy = self._copies[item.loc]
                    key, value, partition = copy.key, None, copy.partition
                    if item.action == "fix":
                        assert item.source_loc is not None
                        value = self._source[item.source_loc].value
                while True:
                    try:
                        producer.produce(self.topic, value, key, partition=partition,
                                         on_delivery=delivered)
                        break
                    except BufferError:
                        producer.poll(0.1)  # the local queue is full: let it drain
                producer.poll(0)
                step.advance()
            producer.flush(_TIMEOUT)
            if failed:
                raise EokafkaError(f"a record was refused: {failed[0]}")
        except (KafkaException, EokafkaError) as exc:
            self._abort(producer)
            raise EokafkaError(f"repair of {self.topic}: nothing was written: {exc}") from exc
        self._commit(producer)
        step.finish()
        return Done(len(plan.of("add")), len(plan.of("remove")), len(plan.of("fix")),
                    [f"committed one Kafka transaction on {self.topic}"])

    def _commit(self, producer: Producer) -> None:
        """Commit; a commit whose outcome is unknown is said to be so, not taken for an abort."""
        while True:
            try:
                producer.commit_transaction(_TIMEOUT)
                return
            except KafkaException as exc:
                err = exc.args[0]
                if err.retriable():
                    continue
                if err.txn_requires_abort():
                    self._abort(producer)
                    raise EokafkaError(
                        f"repair of {self.topic}: nothing was written: {err}"
                    ) from exc
                raise EokafkaError(
                    f"repair of {self.topic}: the commit's outcome is unknown ({err}): "
                    "check again to see what is there"
                ) from exc

    def _abort(self, producer: Producer) -> None:
        try:
            producer.abort_transaction(_TIMEOUT)
        except KafkaException:
            pass  # fenced or fatal: the broker aborts the transaction itself
