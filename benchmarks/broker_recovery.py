"""Broker recovery: from SIGCONT, or from a restarted broker answering, to new committed output.

One eokafka worker copies a continuous input (``benchmarks.apps.stamp``). The script runs its
own dev broker, so it may pause it (SIGSTOP for ``--pause`` seconds, longer than the commit
timeout, so commits in flight time out and the worker takes the unknown-outcome path) and
crash it (SIGKILL, then a restart on the same data dir). For each fault it prints the time
from SIGCONT, or from the restarted broker answering again, until a read_committed reader
in this process sees the first output committed after it. At the end every input id must be
in the committed output exactly once.

    python -m benchmarks.broker_recovery                    # 2 pauses, 2 crashes
    python -m benchmarks.broker_recovery --pauses 3 --crashes 3 --transaction-timeout-ms 3000
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import (
    DEFAULT_PORT,
    WorkerProcess,
    assign_from_start,
    child_env,
    count_ids,
    create_topics,
    exactly_once_report,
    exit_on_sigterm,
    python_cmd,
    read_committed_consumer,
    unique,
)
from benchmarks.restart_latency import Feeder, stop_everything, wait_for
from eokafka.devbroker import signal_broker, start_broker, stop_broker


class CommitWatch(threading.Thread):
    """Notes when committed output becomes visible; reconnects fast after a broker restart,
    so that its own backoff does not count as the worker's recovery time."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        super().__init__(name="reader", daemon=True)
        self.consumer = read_committed_consumer(bootstrap, **{"reconnect.backoff.max.ms": 200})
        assign_from_start(self.consumer, topic, partitions)
        self.last_seen = 0.0
        self.count = 0
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                msgs = [m for m in self.consumer.consume(10_000, 0.05) if m.error() is None]
                if msgs:
                    self.count += len(msgs)
                    self.last_seen = time.monotonic()
        except BaseException as exc:
            self.error = exc
        finally:
            self.consumer.close()

    def first_after(self, since: float) -> bool:
        return self.last_seen > since

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="dev broker port (and +1)")
    p.add_argument("--pauses", type=int, default=2, help="SIGSTOP/SIGCONT rounds")
    p.add_argument("--crashes", type=int, default=2, help="SIGKILL/restart rounds")
    p.add_argument("--transaction-timeout-ms", type=int, default=10_000)
    p.add_argument("--pause", type=float, help="s the broker stays stopped (default: timeout+2)")
    p.add_argument("--rate", type=float, default=2_000, help="input records/s")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--settle", type=float, default=3.0, help="s of normal running per round")
    p.add_argument("--timeout", type=float, default=180.0, help="s to wait for any one step")
    args = p.parse_args()
    exit_on_sigterm()
    pause_s = args.pause or args.transaction_timeout_ms / 1000 + 2

    results: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="eokafka-bench-recovery-") as tmp:
        work, home = Path(tmp), Path(tmp) / "broker"
        print(f"starting a dev broker on 127.0.0.1:{args.port} (home {home}) ...", flush=True)
        bootstrap = start_broker(port=args.port, home=home, fresh=True).bootstrap
        src, out, group = unique("bench-br-in"), unique("bench-br-out"), unique("bench-br")
        env = child_env(BENCH_APP_ID=group, BENCH_INPUT=src, BENCH_OUTPUT=out)
        env = {k: v for k, v in env.items() if not k.startswith("EOKAFKA_")}
        cmd = python_cmd(
            "-m", "eokafka", "run", "benchmarks.apps.stamp:app",
            "--bootstrap-servers", bootstrap, "--state-dir", str(work / "state"),
            "--instance-id", "bench-recovery-0",
            "--transaction-timeout-ms", str(args.transaction_timeout_ms),
        )  # fmt: skip
        feeder = reader = proc = None
        code: int | None = None
        try:
            create_topics(bootstrap, [src, out], args.partitions)
            reader = CommitWatch(bootstrap, out, args.partitions)
            reader.start()
            feeder = Feeder(bootstrap, src, args.rate)
            feeder.start()
            proc = WorkerProcess("worker", cmd, env, work)
            log_path = proc.log_path
            wait_for("first output", lambda: reader.count > 0, args.timeout, proc, reader, feeder)
            faults = ["pause"] * args.pauses + ["crash"] * args.crashes
            for rnd, kind in enumerate(faults, 1):
                time.sleep(args.settle)  # normal running between faults
                if kind == "pause":
                    signal_broker(home, signal.SIGSTOP)
                    time.sleep(pause_s)  # the fault: longer than a commit waits
                    signal_broker(home, signal.SIGCONT)
                    since, note = time.monotonic(), f"stopped {pause_s:.1f} s"
                else:
                    killed = time.monotonic()
                    signal_broker(home, signal.SIGKILL)
                    start_broker(port=args.port, home=home, timeout=args.timeout)
                    since = time.monotonic()
                    note = f"broker restart took {since - killed:.1f} s"
                wait_for(
                    f"round {rnd} output",
                    lambda s=since: reader.first_after(s),
                    args.timeout,
                    proc,
                    reader,
                    feeder,
                )
                took = reader.last_seen - since
                results.append((kind, took, note))
                print(f"round {rnd} ({kind}, {note}): first new committed output after "
                      f"{took:.2f} s", flush=True)  # fmt: skip
            n = feeder.stop()
            feeder = None
            wait_for("all input in the output", lambda: reader.count >= n, args.timeout, proc)
            code = proc.stop()
            proc = None
            resets = sum(1 for line in log_path.read_text(errors="replace").splitlines()
                         if "re-creating the transactional producer" in line)  # fmt: skip
            ok, verdict = exactly_once_report(count_ids(bootstrap, out, args.partitions), range(n))
        finally:
            stop_everything(feeder, proc, reader)
            try:
                signal_broker(home, signal.SIGCONT)
            except Exception:
                pass
            stop_broker(home=home)

    print()
    print(
        f"Broker recovery (SIGCONT or restarted broker answering -> first new committed "
        f"output), one worker, input {args.rate:,.0f} records/s over {args.partitions} "
        f"partitions, transaction_timeout_ms={args.transaction_timeout_ms}"
    )
    for kind in ("pause", "crash"):
        times = [t for k, t, _ in results if k == kind]
        if times:
            listed = ", ".join(f"{t:.2f}" for t in times)
            print(f"  {kind}: {listed} s; median {statistics.median(times):.2f} s")
    print(f"producer re-creations: {resets}")
    print(f"exactly once: {'yes' if ok else 'NO'}: {verdict}; clean exit code {code}")
    if not ok:
        sys.exit("FAILED: committed output is not exactly the input")


if __name__ == "__main__":
    main()
