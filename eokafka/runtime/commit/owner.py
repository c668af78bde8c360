"""The transaction owner: the one place that begins, commits and aborts, and its participants.

Only this class calls the transactional producer (begin, send offsets, commit, abort) or
re-creates it. Everything else that must act around a commit registers a
:class:`~eokafka.runtime.commit.participant.Participant` once, at wiring time, and is called
here at fixed steps, in the order of registration:

Commit (``commit``):
  1. The offsets to commit: the consumer positions of every assigned input (``positions``).
  2. ``prepare(offsets)`` of each participant: the tasks send their stores' changelog records,
     the sinks prepare their outside writes under this transaction's id (and tag the offsets
     with it), a source adds its position record. A participant may move or tag the offsets.
  3. The Kafka commit: ``send_offsets_to_transaction`` with the consumer's group metadata,
     then ``commit_transaction`` (retried by error class, transactional_producer.py).
  4. ``committed(offsets)`` of each participant: stores apply their overlays with the
     changelog offsets they now reflect, sinks make their writes visible, tasks note the
     committed offsets, the purge deletes repartition records below them.
  5. The transaction's tally goes to the metrics; if the commit had to re-create the producer
     (an indefinite error on the way), the re-sync below starts.

Abort (``abort``; also any failure in steps 2-3):
  1. ``abort_transaction`` (a failed abort re-creates the producer instead).
  2. ``aborted(abort)`` of each participant: drop the transaction's work.
  3. If the partitions stay: the re-sync below when the producer was re-created, otherwise
     ``rewind()`` of each participant (inputs back to their committed offsets; sinks resolve
     their prepared writes). If they are leaving, ``rewind()`` later, once they have gone.

Re-sync after a producer re-creation (invariant 10), tried once per loop step until done:
  ``resync()`` of each participant in turn, each until it returns True: the tasks read the
  committed offsets from the group coordinator and bring their stores to their changelogs'
  committed end, the sinks resolve their prepared writes, a source re-reads its position.

The owner also holds what belongs to the open transaction alone: how many input records it
holds (``records``) and its tally of records in and out (published only when it commits).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NoReturn

from confluent_kafka import KafkaError, KafkaException, Producer

from eokafka.config import Settings
from eokafka.errors import EokafkaError
from eokafka.metrics import TxnTally, WorkerMetrics
from eokafka.runtime.clients import KAFKA, Clients
from eokafka.runtime.commit.errors import RecordFailed, TransactionAborted
from eokafka.runtime.commit.participant import Abort, Offsets, Participant
from eokafka.runtime.commit.transactional_producer import TransactionalProducer

log = logging.getLogger("eokafka.commit")


class TransactionOwner:
    def __init__(
        self,
        settings: Settings,
        instance_id: str,
        metrics: WorkerMetrics,
        clients: Clients = KAFKA,
        stateful: bool = False,
    ) -> None:
        self._settings = settings
        self._instance_id = instance_id
        self._metrics = metrics
        self._clients = clients
        self._stateful = stateful
        self._participants: list[Participant] = []
        self._txn: TransactionalProducer | None = None
        self._positions: Callable[[], Offsets] = list
        self._group_metadata: Callable[[], object] = lambda: None
        self._resync_cause: str | None = None
        self._resynced: set[int] = set()  # participants done with the pending re-sync
        self.tally = TxnTally()
        self.records = 0  # input records handed to the open transaction

    def register(self, participant: Participant) -> None:
        """Take part in every commit from now on, after those registered before."""
        self._participants.append(participant)

    def start(
        self,
        positions: Callable[[], Offsets],
        group_metadata: Callable[[], object],
        replaced: Callable[[], bool],
    ) -> None:
        """Make the transactional producer (its init_transactions fences a predecessor).

        ``positions``: the offsets a commit would send; ``replaced``: whether another worker
        holds this instance id (then a fenced producer stops the worker)."""
        self._positions = positions
        self._group_metadata = group_metadata
        self._txn = TransactionalProducer(
            self._settings,
            self._instance_id,
            self._metrics,
            stateful=self._stateful,
            replaced=replaced,
            clients=self._clients,
        )

    # -- what the rest may read ----------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether the transactional producer is made (``start``) and not closed."""
        return self._txn is not None

    @property
    def txn(self) -> TransactionalProducer:
        assert self._txn is not None, "the transaction owner was not started"
        return self._txn

    @property
    def producer(self) -> Producer:
        """The producer of the transaction open now (the record collector produces to it)."""
        return self.txn.producer

    @property
    def transactional_id(self) -> str:
        return self.txn.transactional_id

    @property
    def open(self) -> bool:
        return self._txn is not None and self._txn.open

    @property
    def deadline(self) -> float:
        """When the open transaction is due to commit (clock seconds)."""
        return self.txn.deadline

    @property
    def resyncing(self) -> bool:
        """A producer re-creation is not re-synced after yet: inputs stay paused."""
        return self._resync_cause is not None

    def begin(self) -> None:
        """Open a transaction unless one is open (a commit then sends offsets at least)."""
        self.txn.begin()

    def note_failure(self, err: KafkaError) -> None:
        """The first error that doomed the open transaction, for the abort-loop detector."""
        self.txn.note_failure(err)

    def fail(self, err: KafkaError, during: str) -> NoReturn:
        """Deal with a transactional error by class; raises TransactionAborted."""
        self.txn.fail(err, during)

    # -- commit --------------------------------------------------------------------------

    def commit(self, stays: bool = True) -> bool:
        """Run the commit steps; False if the transaction was aborted instead.

        ``stays``: whether the partitions stay if it aborts (False inside a revoke: they
        are leaving, and ``rewind`` comes when they are gone)."""
        txn = self.txn
        try:
            offsets = self._positions()
            for participant in self._participants:
                offsets = participant.prepare(offsets)
            txn.commit(offsets, self._group_metadata())
        except RecordFailed as failed:
            self.abort(failed.reason, str(failed), stays)
            return False
        except TransactionAborted as aborted:
            self._after_abort(aborted.reason, stays)
            return False
        except KafkaException as exc:  # a record of step 2 refused: abortable or fatal
            try:
                txn.fail(exc.args[0], "prepare")
            except TransactionAborted as aborted:
                self._after_abort(aborted.reason, stays)
            return False
        for participant in self._participants:
            participant.committed(offsets)
        tally = self.tally
        if tally.dropped:
            log.warning(
                "dropped records in the committed transaction: %s",
                ", ".join(f"{n} {reason}" for reason, n in tally.dropped.items()),
            )
        self._metrics.publish(tally)
        tally.clear()
        self.records = 0
        cause = txn.take_reset()
        if cause is not None:  # committed, then re-created against delayed requests
            self._start_resync(cause)
        return True

    # -- abort and rewind ----------------------------------------------------------------

    def abandon(self, failure: RecordFailed | TransactionAborted) -> None:
        """Processing failed: abort the open transaction (unless it is gone already) and go
        back to the last commit."""
        if isinstance(failure, RecordFailed):
            self.abort(failure.reason, str(failure))
        else:
            self._after_abort(failure.reason, True)

    def abort(self, reason: str, detail: str | None = None, stays: bool = True) -> None:
        """Abort the open transaction and drop its work; rewind if the partitions stay."""
        if detail is not None:
            log.warning("aborting transaction: %s", detail)
        self.txn.abort(reason)
        self._after_abort(reason, stays)

    def _after_abort(self, reason: str, stays: bool) -> None:
        abort = Abort(reason, stays, self.records, self.txn.take_failure())
        for participant in self._participants:
            participant.aborted(abort)
        self.tally.clear()
        self.records = 0
        if stays:
            self.rewind()

    def rewind(self) -> None:
        """Back to the last commit: a re-sync if the producer was re-created since, else
        each participant's rewind. After an abort whose partitions left, once they are gone."""
        cause = self.txn.take_reset()
        if cause is not None:
            self._start_resync(cause)
            return
        for participant in self._participants:
            participant.rewind()

    # -- re-sync after a producer re-creation --------------------------------------------

    def _start_resync(self, cause: str) -> None:
        self._resync_cause = cause
        self._resynced = set()
        self.try_resync()

    def try_resync(self) -> bool:
        """One attempt at the pending re-sync; False while a participant can't finish yet."""
        for i, participant in enumerate(self._participants):
            if i in self._resynced:
                continue
            if not participant.resync():
                return False
            self._resynced.add(i)
        log.info("re-sync after the producer re-creation (%s) done", self._resync_cause)
        self._resync_cause = None
        return True

    # -- the end -------------------------------------------------------------------------

    def close(self, clean: bool) -> None:
        """Clean: drain delivery reports (nothing is open). After an error: abort what is
        open without masking that error with another."""
        if self._txn is None:
            return
        if clean:
            self._txn.close()
            return
        try:
            self._txn.abort("error", replace=False)
        except (EokafkaError, KafkaException) as exc:
            log.warning("could not abort on the way out: %s", exc)
            self._txn.open = False

