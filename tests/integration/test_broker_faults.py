"""Exactly-once when the broker is slow, gone, or a commit's outcome is unknown.

These tests run their own broker (never the shared one): a dev broker on free ports in a
temporary home, behind a loopback TCP proxy (tests/tcp_proxy.py) that the broker advertises,
so every client connection goes through it. Faults come from outside the workers: the proxy
withholds one EndTxn response after the broker has committed, or the test SIGSTOPs or
SIGKILLs the broker JVM. The output is then read read_committed: every input exactly once,
and for the stateful app every running total exact.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from eokafka.devbroker import signal_broker, start_broker, stop_broker
from tests.conftest import _free_port_pair
from tests.integration.harness import AppTopics, WorkerProcess, app_topics, wait_for, worker
from tests.integration.test_exactly_once import _assert_exactly_once
from tests.integration.test_exactly_once import _inputs as _copy_inputs
from tests.integration.test_stores import _inputs as _total_inputs
from tests.kafka_helpers import end_offsets, produce_records, read_committed
from tests.tcp_proxy import KafkaProxy
from tests.totals_reference import check_running_totals

pytestmark = pytest.mark.integration
TXN_TIMEOUT_MS = 3000  # commits give up within seconds, so a fault outlasts them quickly
FAST = ["--transaction-timeout-ms", str(TXN_TIMEOUT_MS)]
UNKNOWN = "commit outcome unknown"
RESET = "re-creating the transactional producer"
RESYNC = "re-synced after the producer was re-created"
RECONNECT = ["-c", "reconnect.backoff.max.ms=1000"]


@dataclass
class FaultyBroker:
    """A broker of this module only, behind a proxy, that tests may pause, kill and restart."""

    home: Path
    port: int
    proxy: KafkaProxy

    @property
    def bootstrap(self) -> str:
        return self.proxy.address

    def start(self) -> None:
        start_broker(port=self.port, home=self.home, advertised=self.proxy.address, timeout=120)

    def signal(self, sig: int) -> None:
        signal_broker(self.home, sig)


@pytest.fixture(scope="module")
def faulty_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyBroker]:
    home = tmp_path_factory.mktemp("faulty-broker")
    port = _free_port_pair()
    proxy = KafkaProxy(port, hold_s=2 * TXN_TIMEOUT_MS / 1000 + 2)
    broker = FaultyBroker(home, port, proxy)
    start_broker(port=port, home=home, fresh=True, advertised=proxy.address, timeout=120)
    try:
        yield broker
    finally:
        try:
            broker.signal(signal.SIGCONT)  # never leave a paused JVM behind
        except Exception:
            pass
        stop_broker(home)
        proxy.close()


@dataclass(frozen=True)
class AppCase:
    target: str
    inputs: Callable[[range], list[tuple[bytes, bytes]]]
    outputs_per_input: int

    def check(self, inputs: list[tuple[bytes, bytes]], records: list) -> None:
        if self.outputs_per_input == 2:
            _assert_exactly_once(records, range(len(inputs)))
        else:
            check_running_totals(inputs, records)


STATELESS = AppCase("tests.apps.eos_copy:app", _copy_inputs, 2)
STATEFUL = AppCase("tests.apps.totals:app", lambda ids: _total_inputs(ids, seed=8), 1)
CASES = pytest.mark.parametrize("case", [STATELESS, STATEFUL], ids=["stateless", "stateful"])


class ProcessManager:
    """Restarts a worker that exits, as a process manager would, and keeps its last words."""

    def __init__(self, workers: list[WorkerProcess]) -> None:
        self.workers = workers
        self.exits: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for w in self.workers:
                if w.proc is not None and w.proc.poll() is not None:
                    self.exits.append(w.log()[-600:])
                    w.start()

    def __enter__(self) -> ProcessManager:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)


class Feeder:
    """Produces inputs in small chunks until stopped, so faults land under load."""

    def __init__(self, bootstrap: str, topic: str, case: AppCase, chunk: int = 200) -> None:
        self.bootstrap, self.topic, self.case, self.chunk = bootstrap, topic, case, chunk
        self.sent: list[tuple[bytes, bytes]] = []
        self._all = case.inputs(range(1_000_000))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        producer = Producer(
            {"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "linger.ms": 5}
        )
        failures: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg: object) -> None:
            if err is not None:
                failures.append(err)

        try:
            while not self._stop.is_set():
                batch = self._all[len(self.sent) : len(self.sent) + self.chunk]
                for key, value in batch:
                    producer.produce(self.topic, value, key, on_delivery=delivered)
                # Blocks while the broker is paused or down: the feed stalls with it.
                if producer.flush(180) or failures:
                    raise RuntimeError(f"inputs not delivered: {failures[:1]}")
                self.sent.extend(batch)
                self._stop.wait(0.05)  # pacing: a few thousand inputs a second
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(180)

    def stop(self) -> list[tuple[bytes, bytes]]:
        self.__exit__()
        assert self.error is None, f"feeding inputs failed: {self.error!r}"
        return self.sent


def _committed_outputs(bootstrap: str, topic: str) -> int:
    return sum(end_offsets(bootstrap, topic, "committed").values())


def _no_open_transaction(bootstrap: str, topic: str) -> bool:
    return end_offsets(bootstrap, topic, "committed") == end_offsets(
        bootstrap, topic, "uncommitted"
    )


def _start_workers(
    broker: FaultyBroker, tmp: Path, case: AppCase, names_env: dict[str, str], n: int
) -> list[WorkerProcess]:
    return [
        worker(
            case.target, broker.bootstrap, tmp, f"w{i}", names_env,
            # Long transactions under a steady feed: a fault almost always finds one open.
            # A short reconnect backoff: the test need not wait up to 10 s after a restart.
            [*FAST, "--commit-interval-ms", "1000", "--instance-id", f"w{i}", *RECONNECT],
        ).start()
        for i in range(n)
    ]  # fmt: skip


def _group_caught_up(bootstrap: str, names: AppTopics) -> bool:
    """Whether the app's group has committed offsets at the end of every input partition."""
    ends = end_offsets(bootstrap, names.src, "uncommitted")
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": names.app_id})
    try:
        found = reader.committed([TopicPartition(names.src, p) for p in ends], timeout=30)
    finally:
        reader.close()
    return all(tp.offset == ends[tp.partition] for tp in found)


def _all_output(bootstrap: str, names: AppTopics, expected: int) -> list:
    """The whole committed output once the app has consumed all input and committed it."""
    read_committed(bootstrap, names.out, expected_count=expected, timeout=180)
    wait_for(lambda: _group_caught_up(bootstrap, names), 120, "the group to commit all input")
    wait_for(lambda: _no_open_transaction(bootstrap, names.out), 60, "no open transaction")
    return read_committed(bootstrap, names.out, timeout=120)


def _resets(logs: str) -> int:
    return len(re.findall(RESET, logs))


@CASES
def test_a_commit_whose_outcome_is_unknown_is_not_replayed(
    faulty_broker: FaultyBroker, tmp_path: Path, case: AppCase
) -> None:
    """The broker commits, the worker never hears it: it must resume after that commit."""
    total = 3_000
    names = app_topics(faulty_broker.bootstrap, "unknown", 2)
    inputs = case.inputs(range(total))
    produce_records(faulty_broker.bootstrap, names.src, inputs)
    proxy = faulty_broker.proxy
    proxy.arm(skip=2)  # the third commit's response never arrives
    env = {**names.env, "EOKAFKA_COMMIT_EVERY": "500"}
    extra = [*FAST, "--instance-id", "u"]
    w = worker(case.target, faulty_broker.bootstrap, tmp_path, "w", env, extra).start()
    try:
        wait_for(lambda: bool(proxy.held) and proxy.held[-1].forwarded.is_set(), 60, "EndTxn")
        wait_for(lambda: "cause: unknown-outcome" in w.log(), 60, "the unknown outcome")
        assert UNKNOWN in w.log(), w.log()[-4000:]
        assert proxy.held[-1].cut.wait(30), "the broker never answered the held EndTxn"
        records = _all_output(faulty_broker.bootstrap, names, case.outputs_per_input * total)
        case.check(inputs, records)
        assert RESYNC in w.log(), w.log()[-4000:]
        assert w.terminate() == 0, w.log()[-4000:]
    finally:
        proxy.disarm()
        w.stop_quietly()


def _fault_run(
    broker: FaultyBroker,
    tmp: Path,
    case: AppCase,
    prefix: str,
    inject: Callable[[], None],
    rounds: int = 3,
) -> str:
    """Inject a fault ``rounds`` times under a steady feed, each after committed progress;
    check the whole output exactly once; return the workers' logs."""
    names = app_topics(broker.bootstrap, prefix, 4)
    workers = _start_workers(broker, tmp, case, names.env, 2)
    try:
        with (
            ProcessManager(workers) as manager,
            Feeder(broker.bootstrap, names.src, case) as feeder,
        ):
            for i in range(rounds):
                before = _committed_outputs(broker.bootstrap, names.out)
                wait_for(
                    lambda b=before: _committed_outputs(broker.bootstrap, names.out) > b + 500,
                    120,
                    f"committed progress before fault {i + 1}",
                )
                inject()
            inputs = feeder.stop()
            records = _all_output(broker.bootstrap, names, case.outputs_per_input * len(inputs))
            case.check(inputs, records)
        for last_words in manager.exits:  # a worker may stop, but only saying why
            assert "this worker stops" in last_words, last_words
        logs = "\n".join(w.log() for w in workers)
        for w in workers:
            assert w.terminate() == 0, w.log()[-4000:]
        return logs
    finally:
        for w in workers:
            w.stop_quietly()


@CASES
def test_broker_pauses_longer_than_the_commit_timeout(
    faulty_broker: FaultyBroker, tmp_path: Path, case: AppCase
) -> None:
    def pause() -> None:
        """SIGSTOP right after a commit request reached the broker, SIGCONT after the client
        gave up on it: the broker then commits what the worker could not know about."""
        stopped = threading.Event()

        def stop() -> None:
            faulty_broker.signal(signal.SIGSTOP)
            stopped.set()

        faulty_broker.proxy.on_next_commit(stop)
        assert stopped.wait(60), "no commit to pause the broker in"
        try:
            time.sleep(2 * TXN_TIMEOUT_MS / 1000)  # the fault itself: longer than a commit waits
        finally:
            faulty_broker.signal(signal.SIGCONT)

    logs = _fault_run(faulty_broker, tmp_path, case, "pause", pause)
    # Every pause lasts through commits, so each one re-creates a producer; at least one
    # stop landed before the broker could answer a commit it then made after SIGCONT.
    assert _resets(logs) >= 3, "a pause found no transaction to hit"
    assert UNKNOWN in logs, "no pause left a commit's outcome unknown"


@CASES
def test_broker_crashes_and_restarts_on_its_data(
    faulty_broker: FaultyBroker, tmp_path: Path, case: AppCase
) -> None:
    rounds = iter(range(3))

    def crash() -> None:
        """SIGKILL, then a restart on the same data dir. Every other time the kill comes right
        after the broker answered a commit that the proxy kept from the worker."""
        if next(rounds) % 2 == 0:
            proxy = faulty_broker.proxy
            seen = len(proxy.held)
            proxy.arm()
            wait_for(lambda: len(proxy.held) > seen, 60, "a commit to withhold")
            assert proxy.held[-1].answered.wait(30), "the broker never answered the commit"
        faulty_broker.signal(signal.SIGKILL)
        faulty_broker.start()  # same home and port: it recovers its logs

    logs = _fault_run(faulty_broker, tmp_path, case, "crash", crash)
    assert _resets(logs) >= 3, "a crash found no transaction to hit"
