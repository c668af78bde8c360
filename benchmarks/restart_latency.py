"""Crash-restart latency of one eokafka worker: SIGKILL, restart at once, first new output.

Input flows continuously (a producer thread, ``--rate`` records/s). The worker runs the
``benchmarks.apps.stamp`` app, which writes its own PID into every output, so a
read_committed reader in this process can tell when the *restarted* process commits its
first output. The worker keeps a fixed ``--instance-id`` (static membership and a stable
transactional.id), which is what makes a quick takeover possible: the new consumer takes
the old member's place without a rebalance wait, and the new producer's init_transactions
fences the old one and aborts its open transaction. At the end every input id must be in
the committed output exactly once.

    python -m benchmarks.restart_latency                         # own broker, 3 restarts
    python -m benchmarks.restart_latency --bootstrap 127.0.0.1:39092 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Producer

from benchmarks.common import (
    DEFAULT_PORT,
    CommittedReader,
    WorkerProcess,
    broker,
    child_env,
    count_ids,
    create_topics,
    delete_topics,
    exactly_once_report,
    exit_on_sigterm,
    python_cmd,
    unique,
)

# Log lines of the new worker that mark the stages of a restart, in order.
MILESTONES = (
    ("producer ready", "transactional producer ready"),
    ("consumer started", "worker running"),
    ("partitions assigned", "assigned "),
)


class Feeder(threading.Thread):
    """Produces ``{"id": n}`` (key ``n``) at a steady rate until stopped."""

    def __init__(self, bootstrap: str, topic: str, rate: float) -> None:
        super().__init__(name="feeder", daemon=True)
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
        )
        self.topic = topic
        self.rate = rate
        self.next_id = 0
        self.failures: list[str] = []
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self.failures.append(err.str())

    def run(self) -> None:
        try:
            started = time.monotonic()
            while not self._stop_event.is_set():
                due = int((time.monotonic() - started) * self.rate)
                while self.next_id < due:
                    i = self.next_id
                    value = json.dumps({"id": i}).encode()
                    self.producer.produce(
                        self.topic, value, str(i).encode(), on_delivery=self._on_delivery
                    )
                    self.next_id += 1
                self.producer.poll(0.01)
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def stop(self) -> int:
        """Stop, flush, and return how many records were written (ids 0 .. n-1)."""
        self._stop_event.set()
        self.join(10)
        left = self.producer.flush(30)
        if left or self.failures or self.error:
            raise RuntimeError(
                f"feeder: {left} unsent, failures {self.failures[:3]}, error {self.error}"
            )
        return self.next_id


class StampWatch:
    """Per worker PID, when its first committed output became visible (monotonic clock)."""

    def __init__(self) -> None:
        self.first_seen: dict[int, float] = {}
        self.distinct: set[int] = set()

    def on_batch(self, msgs: list[Any], now: float) -> None:
        for m in msgs:
            value = json.loads(m.value())
            if value["pid"] not in self.first_seen:
                self.first_seen[value["pid"]] = now
            self.distinct.add(value["id"])


def _log_time(line: str) -> float | None:
    """Wall-clock time of an eokafka log line ("2024-01-01 12:00:00,123 INFO ...")."""
    try:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None


def milestones(proc: WorkerProcess, since_wall: float) -> str:
    """Where the restart time went, from the new worker's own log (ms resolution)."""
    found: list[str] = []
    try:
        lines = proc.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for label, needle in MILESTONES:
        for line in lines:
            if needle in line and (t := _log_time(line)) is not None:
                found.append(f"{label} +{t - since_wall:.2f} s")
                break
    return ", ".join(found)


def wait_for(what: str, cond: Any, timeout: float, proc: WorkerProcess, *threads: Any) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        for t in threads:
            if t.error is not None:
                raise RuntimeError(f"{t.name} failed: {t.error}")
        if not proc.alive():
            raise RuntimeError(f"worker exited ({proc.proc.returncode}):\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s:\n{proc.log_tail()}")
        time.sleep(0.005)


def stop_everything(feeder: Feeder | None, proc: WorkerProcess | None, reader: Any) -> None:
    """On the way out, also after an error: the feed, the worker and the reader stop."""
    if feeder is not None:
        feeder._stop_event.set()
        feeder.join(10)
    if proc is not None:
        proc.stop()
    if reader is not None:
        reader.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", help="use this broker instead of starting a dev broker")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="dev broker port (and +1)")
    p.add_argument("--rounds", type=int, default=3, help="kill-and-restart cycles")
    p.add_argument("--rate", type=float, default=2_000, help="input records/s")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--settle", type=float, default=3.0, help="s of normal running before a kill")
    p.add_argument("--timeout", type=float, default=60.0, help="s to wait for any one step")
    p.add_argument("--instance-id", default="bench-restart-0")
    args = p.parse_args()
    exit_on_sigterm()

    latencies: list[float] = []
    with (
        broker(args.bootstrap, args.port) as bootstrap,
        tempfile.TemporaryDirectory(prefix="eokafka-bench-restart-") as tmp,
    ):
        work = Path(tmp)
        src, out, group = unique("bench-rs-in"), unique("bench-rs-out"), unique("bench-rs")
        env = child_env(BENCH_APP_ID=group, BENCH_INPUT=src, BENCH_OUTPUT=out)
        env = {k: v for k, v in env.items() if not k.startswith("EOKAFKA_")}
        cmd = python_cmd(
            "-m",
            "eokafka",
            "run",
            "benchmarks.apps.stamp:app",
            "--bootstrap-servers",
            bootstrap,
            "--state-dir",
            str(work / "state"),
            "--instance-id",
            args.instance_id,
            "--commit-interval-ms",
            "100",
        )
        feeder = reader = proc = None
        watch = StampWatch()
        try:
            create_topics(bootstrap, [src, out], args.partitions)
            reader = CommittedReader(bootstrap, out, args.partitions, on_batch=watch.on_batch)
            reader.start()
            feeder = Feeder(bootstrap, src, args.rate)
            feeder.start()
            proc = WorkerProcess("worker-0", cmd, env, work)
            first = proc
            wait_for(
                "first output",
                lambda: first.pid in watch.first_seen,
                args.timeout,
                proc,
                reader,
                feeder,
            )
            print(
                f"worker pid {proc.pid}: first committed output "
                f"{watch.first_seen[proc.pid] - proc.started_at:.2f} s after its start; "
                f"feeding {args.rate:,.0f} records/s",
                flush=True,
            )
            for rnd in range(1, args.rounds + 1):
                time.sleep(args.settle)
                if not proc.alive():
                    raise RuntimeError(f"worker died on its own:\n{proc.log_tail()}")
                old_pid = proc.pid
                killed_at, killed_wall = time.monotonic(), time.time()
                proc.kill()
                proc = WorkerProcess(f"worker-{rnd}", cmd, env, work)
                new = proc
                wait_for(
                    f"round {rnd} output",
                    lambda pid=new.pid: pid in watch.first_seen,
                    args.timeout,
                    proc,
                    reader,
                    feeder,
                )
                latency = watch.first_seen[new.pid] - killed_at
                latencies.append(latency)
                print(
                    f"round {rnd}: SIGKILL pid {old_pid} -> first committed output of pid "
                    f"{new.pid} after {latency:.2f} s ({milestones(new, killed_wall)})",
                    flush=True,
                )
            time.sleep(1.0)
            n = feeder.stop()
            feeder = None
            wait_for(
                "all input in the output",
                lambda: len(watch.distinct) >= n,
                args.timeout,
                proc,
                reader,
            )
            code = proc.stop()
            proc = None
            reader.stop()
            reader = None
            ok, verdict = exactly_once_report(count_ids(bootstrap, out, args.partitions), range(n))
        finally:
            stop_everything(feeder, proc, reader)
            if args.bootstrap:
                delete_topics(bootstrap, [src, out])

    print()
    print(
        f"Restart latency (SIGKILL -> first committed output of the restarted worker), "
        f"static membership, instance id {args.instance_id!r}, input {args.rate:,.0f} "
        f"records/s over {args.partitions} partitions, commit interval 100 ms"
    )
    for i, lat in enumerate(latencies, 1):
        print(f"  round {i}: {lat:.2f} s")
    median = statistics.median(latencies)
    print(f"  median: {median:.2f} s (target < 5 s: {'met' if median < 5 else 'MISSED'})")
    print(f"exactly once: {'yes' if ok else 'NO'}: {verdict}; clean exit code {code}")
    if not ok:
        sys.exit("FAILED: committed output is not exactly the input")


if __name__ == "__main__":
    main()
