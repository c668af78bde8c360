"""Store restore throughput per backend: a worker rebuilding its state from the changelog.

For each backend (memory, sqlite, rocksdb) the script writes N changelog records (JSON values
of about 100 bytes over K distinct keys, every key written about N/K times, 4 partitions)
straight into the store's compacted changelog topic with a plain producer, then starts
``eokafka run benchmarks.apps.totals_bench:app`` with an empty state directory, which must
restore every store partition in full before it processes anything. It measures:

- restore s / records/s: the duration the worker itself logs per store partition
  (``restored store totals[p]: ...``); partitions restore side by side, so the slowest one
  counts, and records/s = all restored records / that duration. The target is 200,000/s.
- wall s: from the worker's process start to its last "restored store" line, start-up
  (interpreter, imports, producer init, group join) included.
- CPU s and peak RSS of the worker when the restore is done.
- state check: afterwards one input ``{"amount": a}`` per sampled key must come out as
  ``{"key": k, "total": t}`` with t = the changelog's last total for k + a.

    python -m benchmarks.restore                       # 1,000,000 records, own broker
    python -m benchmarks.restore --records 100000 --bootstrap 127.0.0.1:39092
    python -m benchmarks.restore --backends rocksdb --profile /tmp/prof   # py-spy stacks
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from benchmarks.common import (
    DEFAULT_PORT,
    BulkWriter,
    CommittedReader,
    WorkerProcess,
    admin,
    broker,
    child_env,
    create_topics,
    delete_topics,
    exit_on_sigterm,
    python_cmd,
    start_profiler,
    stop_profiler,
    unique,
)

BACKENDS = ("memory", "sqlite", "rocksdb")
TARGET = 200_000
VALUE_BYTES = 100
STORE = "totals"
APP_TARGET = "benchmarks.apps.totals_bench:app"
_RESTORED = re.compile(
    rf"restored store {STORE}\[(\d+)\]: (\d+) records in ([\d.]+)s \(([\d.]+) records/s\)"
)
_RESTORING = f"restoring store {STORE}["


@dataclass
class Result:
    backend: str
    written: int
    restored: int
    restore_s: float
    wall_s: float
    startup_s: float | None
    cpu_s: float | None
    peak_rss_mb: float | None
    checked: int
    wrong: list[str]
    exit_code: int | None

    @property
    def rate(self) -> float:
        return self.restored / self.restore_s if self.restore_s > 0 else float("nan")

    @property
    def ok(self) -> bool:
        return self.checked > 0 and not self.wrong and self.restored == self.written


def key_name(index: int) -> str:
    return f"k{index:06d}"


def changelog_value(total: int, updates: int) -> bytes:
    """A ~100-byte JSON object, as the totals app would store it (it keeps extra fields)."""
    head = f'{{"total":{total},"updates":{updates},"region":"eu-west-1","note":"'
    return (head + "x" * max(0, VALUE_BYTES - len(head) - 2) + '"}').encode()


def create_changelogs(bootstrap: str, names: list[str], partitions: int) -> None:
    """Compacted topics with the source's partition count, as the worker would create them."""
    client = admin(bootstrap)
    topics = [
        NewTopic(n, num_partitions=partitions, replication_factor=1,
                 config={"cleanup.policy": "compact"})
        for n in names
    ]  # fmt: skip
    for future in client.create_topics(topics).values():
        future.result(30)
    deadline = time.monotonic() + 30
    while True:
        md = client.list_topics(timeout=30)
        if all(
            n in md.topics
            and len(md.topics[n].partitions) == partitions
            and all(p.leader >= 0 for p in md.topics[n].partitions.values())
            for n in names
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"changelogs {names} have no leaders after 30 s")
        time.sleep(0.1)


def produce_changelogs(
    bootstrap: str, topics: list[str], n: int, keys: int, partitions: int, seed: int
) -> list[int]:
    """Write the same N changelog records into every topic; return the last total per key.

    Every round writes each key once in a fresh shuffled order, so the changelog is a real
    uncompacted tail (the last write per key wins); key k lives in partition k % partitions,
    where the totals app's input for k goes too.
    """
    writer = BulkWriter(
        bootstrap, **{"linger.ms": 50, "queue.buffering.max.kbytes": 1_048_576}
    )

    rng = random.Random(seed)
    last = [0] * keys
    order = list(range(keys))
    started = time.monotonic()
    for i in range(n):
        if i % keys == 0:
            rng.shuffle(order)
        index = order[i % keys]
        total = (i * 7919) % 1_000_003
        last[index] = total
        key = json.dumps(key_name(index)).encode()
        value = changelog_value(total, i // keys + 1)
        for topic in topics:
            writer.send(topic, value, key, partition=index % partitions)
    writer.finish("changelog", timeout=120)
    print(
        f"changelog: {n:,} records of {VALUE_BYTES} B JSON over {min(n, keys):,} keys and "
        f"{partitions} partitions, written to {len(topics)} topic(s) in "
        f"{time.monotonic() - started:.1f} s",
        flush=True,
    )
    return last


def _log_time(line: str) -> float | None:
    """The wall-clock time of a worker log line (asctime, ms resolution)."""
    try:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None


def restore_lines(proc: WorkerProcess) -> tuple[float | None, dict[int, tuple[str, int, float]]]:
    """(time of the first "restoring" line, {partition: (line, records, seconds)}) so far."""
    try:
        lines = proc.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None, {}
    first: float | None = None
    done: dict[int, tuple[str, int, float]] = {}
    for line in lines:
        if first is None and _RESTORING in line:
            first = _log_time(line)
        m = _RESTORED.search(line)
        if m:
            done[int(m.group(1))] = (line, int(m.group(2)), float(m.group(3)))
    return first, done


def check_state(
    bootstrap: str,
    src: str,
    out: str,
    last: list[int],
    samples: int,
    partitions: int,
    written_keys: int,
    seed: int,
    proc: WorkerProcess,
) -> tuple[int, list[str]]:
    """Feed one input per sampled key; every emitted total must be last changelog total + a."""
    rng = random.Random(seed + 1)
    picked = rng.sample(range(written_keys), min(samples, written_keys))
    expected = {key_name(i): last[i] + i % 97 + 1 for i in picked}
    seen: dict[str, Any] = {}

    def on_batch(msgs: list[Any], _now: float) -> None:
        for m in msgs:
            seen[m.key().decode()] = json.loads(m.value())

    reader = CommittedReader(bootstrap, out, partitions, target=len(picked), on_batch=on_batch)
    reader.start()
    try:
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        for i in picked:
            value = json.dumps({"amount": i % 97 + 1}).encode()
            producer.produce(src, value, key_name(i).encode(), i % partitions)
        if producer.flush(30):
            raise RuntimeError("state check: inputs not written")
        deadline = time.monotonic() + 60
        while reader.done_at is None:
            if reader.error is not None:
                raise RuntimeError(f"state check: output reader failed: {reader.error}")
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"state check: {reader.count} of {len(picked)} outputs; worker "
                    f"{'alive' if proc.alive() else 'exited'}:\n{proc.log_tail()}"
                )
            time.sleep(0.05)
    finally:
        reader.stop()
    wrong = [
        f"{k}: got {seen.get(k)}, expected total {want}"
        for k, want in expected.items()
        if not isinstance(seen.get(k), dict) or seen[k].get("total") != want
    ]
    if reader.count != len(picked):
        wrong.append(f"{reader.count} outputs for {len(picked)} inputs")
    return len(picked), wrong


def run_backend(
    backend: str,
    bootstrap: str,
    app_id: str,
    src: str,
    out: str,
    last: list[int],
    work: Path,
    args: argparse.Namespace,
) -> Result:
    n, parts = args.records, args.partitions
    env = {k: v for k, v in child_env().items() if not k.startswith("EOKAFKA_")}
    env.update(BENCH_APP_ID=app_id, BENCH_INPUT=src, BENCH_OUTPUT=out, BENCH_BACKEND=backend)
    state_dir = work / f"state-{backend}"  # empty: the restore is full
    cmd = python_cmd(
        "-m", "eokafka", "run", APP_TARGET,
        "--bootstrap-servers", bootstrap,
        "--state-dir", str(state_dir),
        "--instance-id", "bench-0",
    )  # fmt: skip
    print(f"{backend}: restoring (log {work / (backend + '.log')}) ...", flush=True)
    proc = WorkerProcess(backend, cmd, env, work)
    prof: subprocess.Popen[bytes] | None = None
    cpu = rss = None
    try:
        give_up = proc.started_at + args.timeout
        while True:
            first, done = restore_lines(proc)
            if args.profile and prof is None and first is not None:
                prof = start_profiler(proc.pid, args.profile / f"restore-{backend}.folded")
            if len(done) >= parts:
                break
            if not proc.alive():
                raise RuntimeError(f"{backend}: worker exited ({proc.proc.returncode}):\n"
                                   f"{proc.log_tail()}")  # fmt: skip
            if time.monotonic() > give_up:
                raise TimeoutError(f"{backend}: restore not done after {args.timeout} s:\n"
                                   f"{proc.log_tail()}")  # fmt: skip
            time.sleep(0.02)
        cpu, rss = proc.cpu_seconds(), proc.peak_rss_mb()
        if prof is not None:
            stop_profiler(prof)
            prof = None
        last_at = max(_log_time(line) or time.time() for line, _, _ in done.values())
        checked, wrong = check_state(
            bootstrap, src, out, last, args.samples, parts, min(n, args.keys), args.seed, proc
        )
    finally:
        if prof is not None:
            stop_profiler(prof)
        code = proc.stop()
    result = Result(
        backend=backend,
        written=n,
        restored=sum(r for _, r, _ in done.values()),
        restore_s=max(s for _, _, s in done.values()),
        wall_s=last_at - proc.started_wall,
        startup_s=None if first is None else first - proc.started_wall,
        cpu_s=cpu,
        peak_rss_mb=rss,
        checked=checked,
        wrong=wrong,
        exit_code=code,
    )
    for p in sorted(done):
        print(f"  {done[p][0].split(': ', 1)[1]}", flush=True)
    print(
        f"{backend}: {result.rate:,.0f} records/s over {result.restore_s:.2f} s; state check "
        f"{'ok' if not wrong else 'FAILED'} ({checked} keys); exit code {code}",
        flush=True,
    )
    for line in wrong[:5]:
        print(f"  wrong: {line}", flush=True)
    return result


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print(
        f"Store restore from the changelog, {args.records:,} records x {VALUE_BYTES} B over "
        f"{min(args.records, args.keys):,} keys and {args.partitions} partitions, empty "
        f"state dir; target {TARGET:,} records/s"
    )
    head = (
        f"{'backend':<8} {'records':>9} {'records/s':>10} {'restore s':>9} {'wall s':>7} "
        f"{'start-up s':>10} {'CPU s':>6} {'peak RSS MB':>11} {'target':>6}  state check"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        check = (
            f"ok: {r.checked} keys = last changelog total + input"
            if not r.wrong
            else f"FAILED: {len(r.wrong)} wrong of {r.checked}"
        )
        if r.restored != r.written:
            check += f"; restored {r.restored:,} of {r.written:,} written"
        print(
            f"{r.backend:<8} {r.restored:>9,} {r.rate:>10,.0f} {r.restore_s:>9.2f} "
            f"{r.wall_s:>7.2f} {_fmt(r.startup_s, '.2f'):>10} {_fmt(r.cpu_s, '.1f'):>6} "
            f"{_fmt(r.peak_rss_mb, '.1f'):>11} {'met' if r.rate >= TARGET else 'MISSED':>6}  "
            f"{check}"
        )
    print(
        "records/s = restored records / restore s; restore s = the longest per-partition "
        "restore the worker logs (partitions restore side by side); wall s = worker process "
        "start to its last 'restored store' line; start-up s = process start to its first "
        "'restoring store' line; CPU s (user+system) and peak RSS (VmHWM) of the worker when "
        "the restore is done."
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated, in order")
    p.add_argument("--samples", type=int, default=100, help="keys checked after the restore")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--bootstrap", help="use this broker instead of starting a dev broker")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="dev broker port (and +1)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per backend")
    p.add_argument(
        "--profile",
        type=Path,
        help="record the worker's restore with py-spy into DIR/restore-<backend>.folded",
    )
    args = p.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or any(b not in BACKENDS for b in backends):
        p.error(f"--backends: choose from {', '.join(BACKENDS)}")
    if args.records < 1 or args.keys < 1:
        p.error("--records and --keys must be positive")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)

    exit_on_sigterm()
    os.chdir(Path(__file__).resolve().parent.parent)
    results: list[Result] = []
    with (
        broker(args.bootstrap, args.port) as bootstrap,
        tempfile.TemporaryDirectory(prefix="eokafka-bench-") as tmp,
    ):
        work = Path(tmp)
        run = unique("bench-rs")
        apps = {b: f"{run}-{b}" for b in backends}
        changelogs = {b: f"{a}-{STORE}-changelog" for b, a in apps.items()}
        inputs = {b: f"{a}-in" for b, a in apps.items()}
        outputs = {b: f"{a}-out" for b, a in apps.items()}
        topics = [*changelogs.values(), *inputs.values(), *outputs.values()]
        try:
            create_changelogs(bootstrap, list(changelogs.values()), args.partitions)
            create_topics(bootstrap, [*inputs.values(), *outputs.values()], args.partitions)
            last = produce_changelogs(
                bootstrap, list(changelogs.values()), args.records, args.keys,
                args.partitions, args.seed,
            )  # fmt: skip
            for b in backends:
                results.append(
                    run_backend(b, bootstrap, apps[b], inputs[b], outputs[b], last, work, args)
                )
        finally:
            if args.bootstrap:
                delete_topics(bootstrap, topics)
    print_table(results, args)
    if args.profile:
        print(f"py-spy stacks (collapsed, one line per stack): {args.profile}/restore-*.folded")
    if not all(r.ok for r in results):
        sys.exit("FAILED: some restored state is wrong")


if __name__ == "__main__":
    main()
