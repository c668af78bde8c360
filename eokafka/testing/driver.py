"""TestDriver: run an App's topology in-process, through the worker itself, without a broker.

The driver builds the same ``Worker`` that ``eokafka run`` starts and hands it in-memory
clients (eokafka/testing/clients.py) and a virtual clock. Records piped in are consumed,
deserialized, processed, stored and produced by the worker's own code, inside transactions
that commit, abort and restore exactly as against Kafka; only the broker is simulated.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from typing import Any, NamedTuple, TypedDict, Unpack

from confluent_kafka import KafkaError

from eokafka import client_configs, config
from eokafka.app import App
from eokafka.errors import TopologyError
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.clients import Clients
from eokafka.runtime.process.worker import Worker
from eokafka.serdes import Serde
from eokafka.state import Store
from eokafka.testing.clients import MemoryAdmin, MemoryConsumer, MemoryProducer, no_leave
from eokafka.testing.cluster import Header, MemoryCluster
from eokafka.testing.partitioners import check

_INSTANCE = "test-driver"
_MAX_STEPS = 1_000_000


class RecordFields(TypedDict, total=False):
    """What an input record may set besides its key and value (see TestDriver.write)."""

    timestamp: int | None
    headers: list[Header] | None
    partition: int | None
    key_serde: Serde | None
    value_serde: Serde | None


class TestRecord(NamedTuple):
    """A record read from an output topic (deserialized when serdes were given)."""

    key: Any
    value: Any
    timestamp: int
    partition: int
    offset: int
    headers: list[Header]


class TestDriver:
    """Drive an App's topology without Kafka; see "Testing without a broker" in the README.

    ``pipe`` writes an input record and lets the worker process it; by default it then
    commits (``commit=False`` leaves the transaction open, to abort it or crash). Outputs are
    read committed (``include_open=True`` adds the open transaction's). Wall-clock time is
    virtual: it moves only with ``advance_time`` (commit intervals are measured on it);
    event time is the record timestamps you pipe.
    """

    __test__ = False  # not a pytest test class, whatever the name says

    def __init__(
        self,
        app: App,
        *,
        partitions: int | Mapping[str, int] = 1,
        start_time_ms: int = 0,
        state_dir: str | None = None,
        **settings: Any,
    ) -> None:
        self.app = app
        default = partitions if isinstance(partitions, int) else 1
        self.cluster = MemoryCluster(default, start_time_ms)
        inputs = [*app.topology.topics, *app.topology.global_topics().values()]
        for topic in inputs:
            if topic not in app.topology.internal_topics:
                count = partitions.get(topic, 1) if isinstance(partitions, Mapping) else default
                self.cluster.create_topic(topic, count)
        self._own_state_dir = state_dir is None
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="eokafka-test-driver-")
        overrides = {"create_topics": True, "state_dir": self.state_dir, **settings}
        self.settings = config.resolve(app.application_id, app._settings, env={}, cli=overrides)
        self._partitioner = check(client_configs.partitioner(self.settings))
        self.clients = Clients(
            consumer=lambda conf: MemoryConsumer(self.cluster, conf),
            restore_consumer=lambda conf: MemoryConsumer(self.cluster, conf),
            producer=lambda conf: MemoryProducer(self.cluster, conf),
            admin=lambda conf: MemoryAdmin(self.cluster, conf),
            leave=no_leave,
            release_predecessor=no_leave,
            clock=self.cluster.clock,
            wall_ms=lambda: self.cluster.now_ms,
        )
        # One set of metrics for every worker the driver starts: counters add up over
        # crashes and restarts, and count committed transactions only.
        self.metrics = WorkerMetrics(app.application_id, _INSTANCE, "test")
        self._failed: Worker | None = None
        self.worker = self._start(hold=False)

    # -- the worker ----------------------------------------------------------------------

    def _start(self, hold: bool) -> Worker:
        """Start a worker and let it join and restore its stores; ``hold``: process nothing."""
        topology, settings, clients = self.app.topology, self.settings, self.clients
        worker = Worker(topology, settings, _INSTANCE, self.metrics, clients=clients)
        worker.start()
        self._consumer(worker).hold = hold
        self._run(worker)
        self._consumer(worker).hold = False
        return worker

    @staticmethod
    def _consumer(worker: Worker) -> MemoryConsumer:
        assert isinstance(worker.consumer, MemoryConsumer)
        return worker.consumer

    def _busy(self, worker: Worker) -> bool:
        return worker.tasks.restoring or self._consumer(worker).has_records()

    def _run(self, worker: Worker | None = None) -> None:
        """Step the worker until it has nothing left to read (or to restore)."""
        worker = worker or self.worker
        for _ in range(_MAX_STEPS):
            if not self._busy(worker):
                return
            self._step(worker)
        raise RuntimeError(f"the worker was still busy after {_MAX_STEPS:,} steps")

    def _step(self, worker: Worker, commit: bool = False) -> None:
        """One pass of the worker loop, or its commit; an error ends the worker as it
        ends the process."""
        if worker is self._failed:
            raise RuntimeError("the worker stopped after an error; crash() starts a new one")
        try:
            if commit:
                worker.commit()  # what the loop does when the commit interval is up
            else:
                worker.step()
        except BaseException:
            self._failed = worker
            worker.close(clean=False)  # aborts the open transaction, as the process exit
            raise

    # -- input ---------------------------------------------------------------------------

    def pipe(
        self,
        topic: str,
        key: Any = None,
        value: Any = None,
        *,
        commit: bool = True,
        **fields: Unpack[RecordFields],
    ) -> None:
        """Write one record to ``topic`` and process it; then commit unless ``commit=False``.

        ``fields``: timestamp, headers, partition, key_serde, value_serde, as for :meth:`write`.
        """
        self.write(topic, key, value, **fields)
        self.process()
        if commit:
            self.commit()

    def write(
        self,
        topic: str,
        key: Any = None,
        value: Any = None,
        *,
        timestamp: int | None = None,
        headers: list[Header] | None = None,
        partition: int | None = None,
        key_serde: Serde | None = None,
        value_serde: Serde | None = None,
    ) -> None:
        """Write one record to ``topic`` as a plain producer would; process nothing yet.

        Key and value go through the given serdes, else the serdes the app declared for
        ``topic``. The timestamp defaults to the driver's wall clock; the partition to the
        one the app's producers would pick for the key (murmur2 as the Java client, unless
        the app's config sets ``partitioner``), or the partitions in turn for a None key.
        """
        count = self.cluster.partitions(topic)
        if count is None:
            raise TopologyError(
                f"topic {topic!r} does not exist: the app neither reads nor writes it"
            )
        topology = self.app.topology
        sources: list[Any] = topology.by_topic().get(topic, [])
        sources += [g for g in topology.global_tables.values() if g.topic == topic]
        if key_serde is None and sources:
            key_serde = sources[0].key_serde
        if value_serde is None and sources:
            value_serde = sources[0].value_serde
        raw_key = key_serde.serialize(key) if key_serde is not None else key
        raw_value = value_serde.serialize(value) if value_serde is not None else value
        if partition is None:
            partition = self.cluster.partition_for(topic, raw_key, self._partitioner)
        elif not 0 <= partition < count:
            raise ValueError(f"{topic!r} has partitions 0..{count - 1}, not {partition}")
        stamp = self.cluster.now_ms if timestamp is None else timestamp
        self.cluster.append(topic, partition, raw_key, raw_value, stamp, headers)

    def process(self) -> None:
        """Let the worker process everything it can read now, inside the open transaction."""
        self._run()

    # -- time and transactions -----------------------------------------------------------

    @property
    def time_ms(self) -> int:
        """The driver's wall clock (epoch ms): default record timestamps, commit deadlines."""
        return self.cluster.now_ms

    def advance_time(self, ms: int) -> None:
        """Move the wall clock on: wall-clock timers that come due fire (in the open
        transaction), and the worker commits if its commit interval has passed. Stream time
        moves with the timestamps of the records piped."""
        if ms < 0:
            raise ValueError("time only moves forward")
        self.cluster.now_ms += ms
        self._step(self.worker)
        self._run()

    def commit(self) -> None:
        """Commit now, and again until everything piped is processed and committed.

        Records that crossed a repartition topic become readable only when the transaction
        that wrote them commits, so this may take several transactions. The wall clock
        stays where it is.
        """
        for _ in range(_MAX_STEPS):
            if self.worker.owner.open:
                self._step(self.worker, commit=True)
            elif not self._busy(self.worker):
                return
            self._run()
        raise RuntimeError(f"still not committed after {_MAX_STEPS:,} transactions")

    def abort(self) -> None:
        """Abort the open transaction (its commit fails as a broker error would make it).

        Outputs and store writes of the transaction vanish and the inputs are rewound to
        the last commit; the worker processes them again at the next pipe or commit.
        """
        owner = self.worker.owner
        if not owner.open:
            return
        producer = owner.producer
        assert isinstance(producer, MemoryProducer)
        reason = "the test driver aborted this transaction"
        producer.fail_commit = KafkaError(KafkaError._OUTDATED, reason, txn_requires_abort=True)
        self._step(self.worker, commit=True)
        if owner.open or producer.fail_commit is not None:
            raise RuntimeError("the worker did not try to commit; nothing was aborted")

    def crash(self) -> None:
        """Kill the worker as SIGKILL would and start a new one over the same topics and state.

        The open transaction is aborted when the new worker fences the old one's
        transactional.id; in-memory stores are rebuilt from their changelogs, persistent
        ones catch up from their checkpoints. The new worker has restored but processed
        nothing yet: inputs since the last commit are processed again at the next pipe
        or commit.
        """
        old = self.worker
        if old is not self._failed:
            old.tasks.close()  # releases the files; a killed process's locks die with it
        self.worker = self._start(hold=True)

    def restart(self) -> None:
        """Stop the worker cleanly (it commits) and start a new one."""
        self._stop()
        self.worker = self._start(hold=False)

    def _stop(self) -> None:
        if self.worker is not self._failed:
            self.worker.stop()
            self.worker.loop()

    # -- output and state ----------------------------------------------------------------

    def output(
        self,
        topic: str,
        *,
        key_serde: Serde | None = None,
        value_serde: Serde | None = None,
        include_open: bool = False,
    ) -> list[TestRecord]:
        """The records of ``topic`` in the order they were produced, committed ones only
        unless ``include_open``."""
        out = []
        for partition, offset, entry in self.cluster.records(topic, include_open):
            key = key_serde.deserialize(entry.key) if key_serde is not None else entry.key
            value = value_serde.deserialize(entry.value) if value_serde is not None else entry.value
            headers = list(entry.headers or [])
            out.append(TestRecord(key, value, entry.timestamp, partition, offset, headers))
        return out

    def metric(self, name: str, **labels: str) -> float:
        """A Prometheus sample of the driver's workers (0 when absent), e.g.
        ``metric("eokafka_records_dropped_total", reason=...)``."""
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def stores(self, name: str) -> dict[int, Store]:
        """The worker's open instances of store ``name``, by partition."""
        if name not in self.app.topology.stores:
            raise TopologyError(f"the app declares no store {name!r}")
        tasks = self.worker.tasks.tasks.values()
        return dict(sorted((t.index, t.stores[name]) for t in tasks if name in t.stores))

    def global_table(self, name: str) -> dict[Any, Any]:
        """The worker's global table ``name`` (``app.global_table``) as it has read it."""
        tables = self.worker.parts.global_tables
        if tables is None or name not in tables.stores:
            raise TopologyError(f"the app declares no global table {name!r}")
        return dict(tables.stores[name].items())

    def store(self, name: str, *, committed: bool = False) -> dict[Any, Any]:
        """Store ``name`` over all partitions: as the open transaction sees it, or as
        committed."""
        out: dict[Any, Any] = {}
        for store in self.stores(name).values():
            if committed:
                for key, data in store.backend.items():
                    out[store.key_serde.deserialize(key)] = store.value_serde.deserialize(data)
            else:
                out.update(store.items())
        return out

    # -- the end -------------------------------------------------------------------------

    def close(self) -> None:
        """Commit what is open and stop the worker; remove a state dir the driver made."""
        self._stop()
        if self._own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> TestDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

