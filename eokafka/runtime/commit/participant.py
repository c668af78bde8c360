"""What takes part in a commit: the contract between the transaction owner and the rest.

Everything that must act around a Kafka commit (the tasks and their stores, the sinks, the
repartition purge, a bounded run, the sources) is a :class:`Participant` registered once with
the transaction owner (owner.py), which calls it at the numbered steps written in the owner's
docstring. A participant overrides only the steps it cares about; the others do nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError, TopicPartition

Offsets = list[TopicPartition]


@dataclass(frozen=True)
class Abort:
    """What a participant learns of an abort."""

    reason: str
    stays: bool  # the partitions stay (rewind follows); False: they are leaving
    records: int  # input records the aborted transaction held
    failure: KafkaError | None  # the first error that doomed it, if the broker gave one


class Participant:
    """A step-by-step party to the commit; every method defaults to doing nothing."""

    def prepare(self, offsets: Offsets) -> Offsets:
        """Before the Kafka commit: add records to the transaction, make outside writes
        durable but invisible; return the offsets to commit (tagged or moved if need be).

        May raise RecordFailed (abort, then replay) or TransactionAborted."""
        return offsets

    def committed(self, offsets: Offsets) -> None:
        """After the Kafka commit succeeded, with the offsets it committed."""

    def aborted(self, abort: Abort) -> None:
        """The transaction was aborted: drop its work (nothing of it was committed)."""

    def rewind(self) -> None:
        """After an abort whose partitions stay: go back to the last commit."""

    def resync(self) -> bool:
        """After the producer was re-created: catch up from what the broker committed (the
        last transaction's outcome is not known here). False: not possible yet, ask again."""
        return True
