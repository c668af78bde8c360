"""Group membership seen from outside the workers, for the rebalance and failover tests.

Who owns which partition comes from each worker's own log lines (``assigned ...``,
``revoked ...``, ``lost ...``), read incrementally so that eager and incremental rebalances
read alike. Restores come from ``eokafka_records_restored_total{store,partition}`` on each
worker's ``/metrics``. Progress comes from the group's committed offsets, which move only
when a transaction with outputs for that partition has committed.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient

from tests.integration.harness import WorkerProcess, wait_for, worker
from tests.integration.test_operations import _free_port, _samples
from tests.kafka_helpers import Record, create_topic, end_offsets
from tests.totals_reference import check_running_totals

TARGET = "tests.apps.totals:app"
# Classic: the broker's group.min.session.timeout.ms (6 s) instead of librdkafka's 45 s.
# Consumer (KIP-848): the session timeout is the broker's (group.consumer.session.timeout.ms).
PROTOCOLS = {
    "classic": ["-c", "consumer.session.timeout.ms=6000"],
    "consumer": ["-c", "group.protocol=consumer"],
}
# "assigned/revoked/lost <topic>[<p>], ..." from whichever eokafka logger reports them.
_EVENT = re.compile(r" eokafka\.[\w.]+: (assigned|revoked|lost) (.*)$")


def rebalance_lines(text: str) -> list[str]:
    """The log lines that report partitions coming or going."""
    return [line for line in text.splitlines() if _EVENT.search(line)]


def key_name(i: int) -> str:
    return f"k{i}"


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    """Inputs as they are; outputs stamped with LogAppendTime, so an output's timestamp is
    when the worker wrote it (the input's timestamp would be copied otherwise)."""
    for name in names:
        config = {"message.timestamp.type": "LogAppendTime"} if "-out" in name else None
        create_topic(bootstrap, name, partitions, config=config)


class Inputs:
    """Count-by-key inputs ``{"id": n, "amount": 1}``; key ``k<i>`` always goes to partition
    ``i % partitions``, so every output can be traced to its input partition."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.topic, self.partitions = topic, partitions
        self.sent: list[tuple[bytes, bytes]] = []
        self.topic_of: list[str] = []  # by input id
        self.sent_at: list[float] = []  # wall clock s, by input id
        self.partition_of: dict[bytes, int] = {}
        self._errors: list[KafkaError] = []
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "linger.ms": 20,
                "acks": "all",
                "enable.idempotence": True,
                "queue.buffering.max.messages": 1_000_000,
            }
        )

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._errors.append(err)

    def send(self, key_index: int, topic: str | None = None) -> None:
        """One input to ``topic`` (default: the first one; ids count over all topics)."""
        key = key_name(key_index).encode()
        value = json.dumps({"id": len(self.sent), "amount": 1}).encode()
        partition = key_index % self.partitions
        self.partition_of[key] = partition
        self.sent.append((key, value))
        self.topic_of.append(topic or self.topic)
        self.sent_at.append(time.time())
        while True:
            try:
                self._producer.produce(
                    topic or self.topic, value, key, partition, on_delivery=self._on_delivery
                )
                break
            except BufferError:
                self._producer.poll(0.1)  # local queue full: serve delivery reports, retry
        self._producer.poll(0)

    def flush(self) -> None:
        remaining = self._producer.flush(120)
        assert not remaining, f"{remaining} inputs to {self.topic} were never delivered"
        assert not self._errors, f"inputs to {self.topic} refused: {self._errors[:3]}"


def one_per_key(bootstrap: str, topics: list[str], keys: int, partitions: int) -> Inputs:
    """The initial state: one input for each of ``keys`` keys, over ``topics`` in turn."""
    inputs = Inputs(bootstrap, topics[0], partitions)
    for i in range(keys):
        inputs.send(i, topics[i % len(topics)])
    inputs.flush()
    return inputs


class Feeder(threading.Thread):
    """Input that keeps flowing while workers come and go: ``rate`` records/s over random
    existing keys (a fixed stride, so the test is reproducible)."""

    def __init__(
        self, inputs: Inputs, keys: int, rate: float, topics: tuple[str, ...] = ()
    ) -> None:
        super().__init__(daemon=True)
        self.inputs, self.keys, self.rate = inputs, keys, rate
        self.topics = topics or (inputs.topic,)
        self.done = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            start, n = time.monotonic(), 0
            while not self.done.is_set():
                due = int((time.monotonic() - start) * self.rate)
                while n < due:
                    topic = self.topics[n % len(self.topics)]
                    self.inputs.send((n * 7_919) % self.keys, topic)
                    n += 1
                self.done.wait(0.01)  # pacing of a steady input rate
            self.inputs.flush()
        except BaseException as exc:  # surfaced by stop() in the test thread
            self.failure = exc

    def stop(self) -> None:
        self.done.set()
        self.join(180)
        assert not self.is_alive(), "the feeder did not stop"
        if self.failure is not None:
            raise self.failure


@dataclass
class Member:
    """One worker instance: its process, metrics port and what its log says it owns."""

    name: str
    proc: WorkerProcess
    port: int
    topic: str

    def start(self) -> Member:
        self.proc.start()
        return self

    def owned(self, upto: int | None = None) -> set[int]:
        """Input partitions owned after the first ``upto`` characters of the current
        process's log (all of it by default)."""
        text = self.current_log()[:upto]
        owned: set[int] = set()
        pattern = re.compile(rf"{re.escape(self.topic)}\[(\d+)\]")
        for line in text.splitlines():
            m = _EVENT.search(line)
            if m is None:
                continue
            parts = {int(p) for p in pattern.findall(m.group(2))}
            owned = owned | parts if m.group(1) == "assigned" else owned - parts
        return owned

    def assigned_between(self, start: int, end: int) -> set[int]:
        pattern = re.compile(rf"{re.escape(self.topic)}\[(\d+)\]")
        out: set[int] = set()
        for line in self.current_log()[start:end].splitlines():
            m = _EVENT.search(line)
            if m is not None and m.group(1) == "assigned":
                out |= {int(p) for p in pattern.findall(m.group(2))}
        return out

    def current_log(self) -> str:
        path = self.proc.logs[-1]
        return path.read_text(errors="replace") if path.exists() else ""

    def restored(self, store: str) -> dict[int, float]:
        """Records restored per partition of ``store`` since this process started."""
        return {
            int(dict(labels)["partition"]): value
            for (name, labels), value in _samples(self.port).items()
            if name == "eokafka_records_restored_total" and dict(labels).get("store") == store
        }

    def metric(self, name: str, **labels: str) -> dict[int, float]:
        """A per-partition metric, filtered by labels (e.g. store="totals")."""
        out: dict[int, float] = {}
        for (n, labs), value in _samples(self.port).items():
            ls = dict(labs)
            if n == name and all(ls.get(k) == v for k, v in labels.items()):
                out[int(ls["partition"])] = value
        return out

    def check_alive(self) -> None:
        if not self.proc.alive:
            code = self.proc.proc.returncode if self.proc.proc else None
            log = self.proc.log()
            errors = [x for x in log.splitlines() if re.search(r"error|fatal", x, re.I)]
            raise AssertionError(
                f"worker {self.name} exited (code {code}) while the test needed it; its last "
                f"error lines:\n" + "\n".join(errors[-5:]) + "\nits log ends:\n" + log[-3000:]
            )


def stop(m: Member) -> None:
    """SIGTERM, and a clean exit expected."""
    code = m.proc.terminate(60)
    assert code == 0, f"{m.name} exited with {code} on SIGTERM:\n{m.proc.log()[-3000:]}"


def members(
    bootstrap: str,
    tmp: Path,
    env: dict[str, str],
    topic: str,
    names: list[str],
    extra: list[str],
    target: str = TARGET,
) -> list[Member]:
    out = []
    for name in names:
        port = _free_port()
        args = ["--instance-id", name, "--metrics-port", str(port), *extra]
        out.append(Member(name, worker(target, bootstrap, tmp, name, env, args), port, topic))
    return out


def group_offsets(
    bootstrap: str, group: str, topic: str, admin: AdminClient | None = None
) -> dict[int, int]:
    admin = admin or AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    result = futures[group].result(timeout=30)
    return {tp.partition: tp.offset for tp in result.topic_partitions if tp.topic == topic}


def settle(
    bootstrap: str,
    group: str,
    topic: str,
    live: list[Member],
    partitions: int,
    what: str,
    more_topics: tuple[str, ...] = (),
) -> None:
    """Wait until each live member owns some partitions, together every partition exactly
    once, and the app has committed past everything produced by then (restores are over)."""

    def owned_once() -> bool:
        for m in live:
            m.check_alive()
        sets = [m.owned() for m in live]
        once = sorted(p for s in sets for p in s) == list(range(partitions))
        return once and all(sets)  # no more members than partitions here: each owns some

    wait_for(owned_once, 180, f"{what}: {', '.join(m.name for m in live)} to own each of "
             f"{partitions} partitions once (now {[sorted(m.owned()) for m in live]})",
             interval=0.2)  # fmt: skip
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for t in (topic, *more_topics):
        target = end_offsets(bootstrap, t, "uncommitted")

        def caught_up(t: str = t, target: dict[int, int] = target) -> bool:
            for m in live:
                m.check_alive()
            done = group_offsets(bootstrap, group, t, admin)
            return all(done.get(p, -1) >= n or n == 0 for p, n in target.items())

        wait_for(caught_up, 180, f"{what}: committed offsets of {t} to reach {target} "
                 f"(now {group_offsets(bootstrap, group, t, admin)})", interval=0.2)  # fmt: skip


@dataclass
class Snapshot:
    """Per member at one moment: the log length, owned partitions and restore counters."""

    starts: dict[str, int] = field(default_factory=dict)
    marks: dict[str, int] = field(default_factory=dict)
    owned: dict[str, set[int]] = field(default_factory=dict)
    restored: dict[str, dict[int, float]] = field(default_factory=dict)
    wall: float = 0.0


def snapshot(live: list[Member], store: str) -> Snapshot:
    snap = Snapshot(wall=time.time())
    for m in live:
        mark = len(m.current_log())
        snap.starts[m.name] = m.proc.starts
        snap.marks[m.name] = mark
        snap.owned[m.name] = m.owned(mark)
        snap.restored[m.name] = m.restored(store)
    return snap


def restores_of_kept_partitions(
    before: Snapshot, after: Snapshot, everyone: list[Member], store: str, change: str
) -> list[str]:
    """Partitions that stayed on one running process across the change, with the records
    that process restored for them meanwhile (each should be 0). A partition stayed if its
    owner is the same process before and after and no other member was assigned it in
    between."""
    problems = []
    for m in everyone:
        if m.name not in before.owned or m.name not in after.owned:
            continue
        if before.starts[m.name] != after.starts[m.name]:
            continue  # restarted: a new process, its stores are new
        moved: set[int] = set()
        for other in everyone:
            if other is m or other.name not in after.marks:
                continue
            same = before.starts.get(other.name) == after.starts[other.name]
            start = before.marks[other.name] if same else 0
            moved |= other.assigned_between(start, after.marks[other.name])
        kept = (before.owned[m.name] & after.owned[m.name]) - moved
        for p in sorted(kept):
            n = after.restored[m.name].get(p, 0) - before.restored[m.name].get(p, 0)
            if n:
                problems.append(
                    f"{change}: {m.name} kept {store}[{p}] but restored {int(n)} records"
                )
    return problems


def longest_gaps(
    records: list[Record], partition_of: dict[bytes, int], partitions: int, t0: float, t1: float
) -> dict[int, float]:
    """Per input partition, the longest gap (s) between two consecutive outputs (by their
    LogAppendTime) that overlaps the interval [t0, t1] (wall clock s)."""
    times: dict[int, list[float]] = defaultdict(list)
    for r in records:
        assert r.key is not None
        times[partition_of[r.key]].append(r.timestamp / 1000)
    out = {}
    for p in range(partitions):
        ts = sorted(times[p])
        out[p] = max(
            (b - a for a, b in zip(ts, ts[1:], strict=False) if b >= t0 and a <= t1),
            default=0.0,
        )
    return out


def longest_waits(records: list[Record], inputs: Inputs, t0: float, t1: float) -> dict[int, float]:
    """Per input partition, the longest time (s) from sending an input to the worker writing
    its output (LogAppendTime), over the inputs sent in [t0, t1] (wall clock s)."""
    out = dict.fromkeys(range(inputs.partitions), 0.0)
    for r in records:
        assert r.key is not None and r.value is not None
        sent = inputs.sent_at[json.loads(r.value)["id"]]
        if t0 <= sent <= t1:
            p = inputs.partition_of[r.key]
            out[p] = max(out[p], r.timestamp / 1000 - sent)
    return out


def check_counts(inputs: Inputs, records: list[Record]) -> None:
    """Exact running counts: every input's output once, each with its key's count up to
    that input (in each input topic's order), checked against tests/totals_reference.py."""
    check_running_totals(inputs.sent, records, inputs.topic_of)


def no_open_transactions(bootstrap: str, topics: list[str]) -> None:
    """Every partition's last stable offset reaches its high watermark: no transaction is
    left open on any of ``topics``."""

    def open_ones() -> list[str]:
        out = []
        for t in topics:
            lso, hwm = (
                end_offsets(bootstrap, t, "committed"),
                end_offsets(bootstrap, t, "uncommitted"),
            )
            out += [f"{t}[{p}] stable {lso[p]} < end {hwm[p]}" for p in hwm if lso[p] < hwm[p]]
        return out

    try:
        wait_for(lambda: not open_ones(), 60, "no open transaction", interval=0.5)
    except AssertionError:
        raise AssertionError(f"transactions still open: {open_ones()}") from None


def describe(values: dict[int, float]) -> str:
    return ", ".join(f"p{p} {v:.2f}s" for p, v in sorted(values.items()))


def first_commit_after(
    bootstrap: str, group: str, topic: str, partitions: set[int], since: float, liveness_s: float
) -> float:
    """Seconds from ``since`` (monotonic) until a transaction has committed for every one of
    ``partitions`` (its committed offset moved past where it is now); fails only if that
    takes longer than the liveness bound ``liveness_s``."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    start = group_offsets(bootstrap, group, topic, admin)
    pending = set(partitions)

    def moved() -> bool:
        now = group_offsets(bootstrap, group, topic, admin)
        pending.difference_update(p for p in list(pending) if now.get(p, -1) > start.get(p, -1))
        return not pending

    wait_for(moved, liveness_s, f"a committed transaction for partitions "
             f"{sorted(partitions)}", interval=0.02)  # fmt: skip
    return time.monotonic() - since
