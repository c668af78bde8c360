"""Shared plumbing for the benchmarks: broker, topics, worker processes, committed readers.

Everything here talks to Kafka with plain confluent-kafka clients, never through eokafka, so
a bug in the framework cannot skew the yardstick that measures it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 39092


def unique(prefix: str) -> str:
    """A name no earlier run on a reused broker can have taken."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so the finally blocks stop everything we started."""

    def handler(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def broker(bootstrap: str | None, port: int = DEFAULT_PORT) -> Iterator[str]:
    """Yield a bootstrap address: the given one, or a fresh dev broker stopped afterwards."""
    if bootstrap:
        yield bootstrap
        return
    from eokafka.devbroker import start_broker, stop_broker

    with tempfile.TemporaryDirectory(prefix="eokafka-bench-broker-") as tmp:
        home = Path(tmp)
        try:
            print(f"starting a dev broker on 127.0.0.1:{port} (home {home}) ...", flush=True)
            info = start_broker(port=port, home=home, fresh=True)
            yield info.bootstrap
        finally:
            stop_broker(home=home)


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topics(bootstrap: str, names: list[str], partitions: int, timeout: float = 30) -> None:
    """Create the topics and return once every partition has a leader (produce needs one)."""
    client = admin(bootstrap)
    futures = client.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
    )
    for future in futures.values():
        future.result(timeout)
    deadline = time.monotonic() + timeout
    while True:
        md = client.list_topics(timeout=timeout)
        ready = all(
            n in md.topics
            and md.topics[n].error is None
            and len(md.topics[n].partitions) == partitions
            and all(p.leader >= 0 for p in md.topics[n].partitions.values())
            for n in names
        )
        if ready:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics {names} have no leaders after {timeout} s")
        time.sleep(0.1)


def delete_topics(bootstrap: str, names: list[str]) -> None:
    """Best effort: a reused broker should not fill up with benchmark topics."""
    if not names:
        return
    names = list(dict.fromkeys(names))  # a name twice in one request crashes confluent-kafka
    client = admin(bootstrap)  # keep a reference: the futures die with the client
    try:
        for future in client.delete_topics(names, operation_timeout=30).values():
            future.result(30)
    except KafkaException as exc:
        print(f"note: could not delete topics {names}: {exc}", file=sys.stderr)


def read_committed_consumer(bootstrap: str, **extra: Any) -> Consumer:
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": unique("bench-reader"),  # never joined: partitions are assigned by hand
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # Wake up quickly when a commit makes records visible; the default 500 ms would
        # put up to half a second of reader latency into every timing.
        "fetch.wait.max.ms": 20,
        # Nor pause a second each time its prefetch queue fills (see eokafka's consumer).
        "fetch.queue.backoff.ms": 10,
    }
    conf.update(extra)
    return Consumer(conf)


def assign_from_start(consumer: Consumer, topic: str, partitions: int) -> None:
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])


class CommittedReader(threading.Thread):
    """Reads a topic read_committed from its start and timestamps what becomes visible.

    ``on_batch`` (if given) sees every batch with its arrival time; without it the thread
    only counts, so it costs the machine as little as reading can.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        target: int | None = None,
        on_batch: Callable[[list[Any], float], None] | None = None,
    ) -> None:
        super().__init__(name=f"reader-{topic}", daemon=True)
        self.consumer = read_committed_consumer(bootstrap)
        assign_from_start(self.consumer, topic, partitions)
        self.target = target
        self.on_batch = on_batch
        self.count = 0
        self.first_at: float | None = None
        self.first_count = 0
        self.done_at: float | None = None
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                msgs = self.consumer.consume(10_000, 0.05)
                if not msgs:
                    continue
                now = time.monotonic()
                for m in msgs:
                    if m.error() is not None:
                        raise KafkaException(m.error())
                if self.on_batch is not None:
                    self.on_batch(msgs, now)
                self.count += len(msgs)
                if self.first_at is None:
                    self.first_at, self.first_count = now, self.count
                if self.target is not None and self.done_at is None and self.count >= self.target:
                    self.done_at = now
        except BaseException as exc:  # surfaced by the caller, which owns the output
            self.error = exc
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


def read_all(
    bootstrap: str, topic: str, partitions: int, idle_timeout: float = 10.0
) -> Iterator[Message]:
    """Every committed record of ``topic`` in partition order, up to each partition's end.

    Ends at the partitions' ends (the last stable offset under read_committed), so run it
    once the writers have stopped: then nothing is left in flight.
    """
    consumer = read_committed_consumer(bootstrap, **{"enable.partition.eof": True})
    assign_from_start(consumer, topic, partitions)
    at_end: set[int] = set()
    last_progress = time.monotonic()
    try:
        while len(at_end) < partitions:
            msgs = consumer.consume(10_000, 0.5)
            if not msgs and time.monotonic() - last_progress > idle_timeout:
                raise TimeoutError(f"{topic}: no end of partition after {idle_timeout} s idle")
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(m.partition())
                        continue
                    raise KafkaException(err)
                at_end.discard(m.partition())
                yield m
            if msgs:
                last_progress = time.monotonic()
    finally:
        consumer.close()


def count_ids(bootstrap: str, topic: str, partitions: int, idle_timeout: float = 10.0) -> dict:
    """How often each key (an int id) occurs among the committed records of ``topic``."""
    counts: dict[int, int] = {}
    for m in read_all(bootstrap, topic, partitions, idle_timeout):
        key = int(m.key())
        counts[key] = counts.get(key, 0) + 1
    return counts


class BulkWriter:
    """Fills a benchmark's input before any contender runs: idempotent, in large batches,
    and every record acknowledged or an error."""

    def __init__(self, bootstrap: str, **overrides: Any) -> None:
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,  # keeps the per-partition order the checks rely on
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
        }
        conf.update(overrides)
        self.producer = Producer(conf)
        self.failures: list[str] = []
        self.sent = 0

    def _on_delivery(self, err: object, _msg: object) -> None:
        if err is not None:
            self.failures.append(str(err))

    def send(self, topic: str, value: bytes, key: bytes, **placement: Any) -> None:
        """Produce one record (``partition=``/``timestamp=`` optional), waiting while full."""
        while True:
            try:
                self.producer.produce(
                    topic, value, key, on_delivery=self._on_delivery, **placement
                )
                break
            except BufferError:
                self.producer.poll(0.05)
        self.sent += 1
        if self.sent % 10_000 == 0:
            self.producer.poll(0)

    def finish(self, what: str, timeout: float = 60) -> None:
        left = self.producer.flush(timeout)
        if left or self.failures:
            raise RuntimeError(
                f"{what} not fully written: {left} queued, failures {self.failures[:3]}"
            )


def exactly_once_report(counts: dict[int, int], expected: range) -> tuple[bool, str]:
    """Compare key counts with the ids that were fed in: every id exactly once."""
    missing = sum(1 for i in expected if i not in counts)
    dupes = sum(c - 1 for c in counts.values() if c > 1)
    extra = sum(1 for k in counts if k not in expected)
    total = sum(counts.values())
    ok = missing == 0 and dupes == 0 and extra == 0
    text = (
        f"{total} records, {len(counts)} distinct ids, {missing} missing, "
        f"{dupes} duplicates, {extra} unexpected"
    )
    return ok, text


class WorkerProcess:
    """One benchmark process, its log file, and the numbers /proc knows about it."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str],
        log_dir: Path,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.name = name
        self.cmd = cmd
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = open(self.log_path, "ab")  # closed in stop()/kill()
        self.started_at = time.monotonic()
        self.started_wall = time.time()
        # A session of its own: Ctrl-C reaches only the benchmark, whose finally stops us.
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _tree(self) -> list[int]:
        """The process and its descendants (``--processes N`` starts worker children)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        tree, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, ()))
        return tree

    @staticmethod
    def _status(pid: int, field: str) -> int | None:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])  # kB
        except (OSError, ValueError):
            pass
        return None

    def peak_rss_mb(self) -> float | None:
        """VmHWM, the high-water mark of resident memory, read before the process ends;
        summed over the process and its children (worker processes)."""
        peaks = [kb for pid in self._tree() if (kb := self._status(pid, "VmHWM")) is not None]
        return sum(peaks) / 1024 if peaks else None

    def cpu_seconds(self) -> float | None:
        """User + system time of the process and its living children."""
        total, ticks = None, os.sysconf("SC_CLK_TCK")
        for pid in self._tree():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total = (total or 0.0) + (int(fields[11]) + int(fields[12])) / ticks  # utime+stime
        return total

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the workers commit and leave), SIGKILL if that takes too long."""
        try:
            if self.alive():
                self.proc.send_signal(signal.SIGTERM)
                try:
                    return self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    print(f"{self.name}: no exit {timeout} s after SIGTERM, killing", flush=True)
                    self.proc.kill()
                    self.proc.wait(10)
            return self.proc.returncode
        finally:
            self._log.close()

    def kill(self) -> None:
        """SIGKILL and reap, as a crash would end it."""
        try:
            if self.alive():
                self.proc.kill()
                self.proc.wait(10)
        finally:
            self._log.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def keep_logs_if_failed(work: Path, all_ok: bool) -> None:
    """Copy the worker logs out of the temporary work folder when an output check failed,
    so the failure can be looked into after the folder is gone."""
    if all_ok:
        return
    kept = Path(tempfile.mkdtemp(prefix="eokafka-bench-failed-"))
    for log in work.glob("*.log"):
        shutil.copy2(log, kept / log.name)
    print(f"an output check failed: the worker logs are kept in {kept}", flush=True)


def python_cmd(*args: str) -> list[str]:
    """Run with this interpreter so the workers see the same installed packages."""
    return [sys.executable, *args]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a contender's process. Python may cache bytecode, as an installed
    package has it: with PYTHONDONTWRITEBYTECODE set (a development shell's habit) every
    start compiles every module again, half a second that no deployment pays."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


BASELINE = "-baseline"  # the suffix of an eokafka contender run from the --baseline tree


def add_baseline_option(p: argparse.ArgumentParser) -> None:
    """--baseline TREE: every eokafka contender runs twice, from this tree and from TREE."""
    p.add_argument(
        "--baseline",
        type=Path,
        metavar="TREE",
        help="a checkout of another eokafka commit (git worktree add /tmp/base <commit>): "
        f"every eokafka contender X also runs from it as X{BASELINE}, right after X in each "
        "round, for an A/B of two commits side by side",
    )


def with_baselines(names: list[str], baseline: Path | None, is_eokafka: Callable[[str], bool]
                   ) -> list[str]:  # fmt: skip
    """The contenders, each eokafka one followed by its baseline twin (with --baseline)."""
    if baseline is None:
        return names
    return [n for name in names for n in ((name, name + BASELINE) if is_eokafka(name) else
                                          (name,))]  # fmt: skip


def from_tree(name: str, baseline: Path | None) -> tuple[str, Path]:
    """A contender's name without its baseline suffix, and the tree it runs from."""
    if not name.endswith(BASELINE):
        return name, REPO_ROOT
    assert baseline is not None
    return name[: -len(BASELINE)], baseline.resolve()


def in_tree(env: dict[str, str], tree: Path) -> dict[str, str]:
    """``env`` for a process run from ``tree`` (its cwd): that tree first on PYTHONPATH, so
    that ``-m eokafka`` and the benchmark apps are imported from it."""
    return env if tree == REPO_ROOT else {**env, "PYTHONPATH": str(tree)}


def add_profile_option(p: argparse.ArgumentParser) -> None:
    """--profile DIR: py-spy stacks of each contender's worker, for finding where time goes."""
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record each worker with py-spy (first to last output) into DIR/<contender>.folded;"
        " py-spy costs CPU, so profiled figures are not comparable with unprofiled ones",
    )


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy's collapsed stacks of the worker (its native threads too) until SIGINT."""
    cmd = ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
           "--output", str(out)]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def stop_profiler(prof: subprocess.Popen[bytes]) -> None:
    prof.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        prof.wait(30)
    except subprocess.TimeoutExpired:
        prof.kill()
        prof.wait(10)


def watch(
    name: str,
    proc: WorkerProcess,
    reader: CommittedReader,
    want: int,
    timeout: float,
    profile: Path | None = None,
) -> tuple[float | None, float | None, tuple[float, int] | None]:
    """Wait until ``reader`` has seen ``want`` outputs of ``proc``.

    Returns the worker's peak RSS (MB) and CPU seconds then, and (CPU seconds, outputs seen)
    at its first committed output: CPU spent after that is what the worker costs per record
    in its stride, start-up left out. With ``profile`` (a file), py-spy records the worker's
    stacks from its first committed output to its last.
    """
    cpu_mark: tuple[float, int] | None = None
    prof: subprocess.Popen[bytes] | None = None
    give_up = proc.started_at + timeout
    try:
        while reader.done_at is None:
            if cpu_mark is None and reader.first_at is not None:
                cpu_mark = (proc.cpu_seconds() or 0.0, reader.count)
                if profile is not None:
                    prof = start_profiler(proc.pid, profile)
            _check_progress(name, proc, reader, want, timeout, give_up)
            time.sleep(0.05)  # poll interval of the reader's progress
        return proc.peak_rss_mb(), proc.cpu_seconds(), cpu_mark
    finally:
        if prof is not None:
            stop_profiler(prof)


def _check_progress(
    name: str, proc: WorkerProcess, reader: CommittedReader, want: int, timeout: float,
    give_up: float,
) -> None:  # fmt: skip
    """Raise if the reader failed, the worker died or the time is up."""
    if reader.error is not None:
        raise RuntimeError(f"{name}: output reader failed: {reader.error}")
    if not proc.alive():
        raise RuntimeError(
            f"{name} exited ({proc.proc.returncode}) after {reader.count} of {want} "
            f"records:\n{proc.log_tail()}"
        )
    if time.monotonic() > give_up:
        raise TimeoutError(
            f"{name}: {reader.count} of {want} records after {timeout} s:\n{proc.log_tail()}"
        )
