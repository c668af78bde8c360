"""Interactive queries: lookups per second against one worker, and the server's cost.

1. **Lookups.** Two workers of the count-by-key app (benchmarks/apps/count_bench.py) hold
   ``--keys`` keys; ``--threads`` clients ask worker A for ``--seconds``, once for keys whose
   partition A owns (answered by A's loop) and once for keys B owns (A forwards them to B).
2. **Cost to the worker.** One worker of the passthrough app and one of the count-by-key
   app each go over ``--records`` records from the start in three modes: without a query
   server, with the server and no queries, and with the clients asking it all the while.
   Steady-state records/s and CPU per record (first committed output to last), ``--rounds``
   interleaved rounds, medians with their ranges.

    python -m benchmarks.queries                                  # own broker
    python -m benchmarks.queries --bootstrap 127.0.0.1:39092 --records 100000 --seconds 5

The figures are indicative: clients, workers and broker share the machine.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from benchmarks.common import (
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
    unique,
    watch,
)

APP = "benchmarks.apps.count_bench:app"
STORE = "counts"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(
    name: str, bootstrap: str, work: Path, src: str, out: str, group: str, port: int | None,
    app: str = APP,
) -> WorkerProcess:  # fmt: skip
    env = {k: v for k, v in child_env().items() if not k.startswith("EOKAFKA_")}
    env.update(BENCH_APP_ID=group, BENCH_INPUT=src, BENCH_OUTPUT=out)
    if port is not None:
        env["EOKAFKA_HTTP_PORT"] = str(port)
    cmd = python_cmd(
        "-m", "eokafka", "run", app, "--bootstrap-servers", bootstrap,
        "--state-dir", str(work / f"state-{name}"), "--instance-id", name,
    )  # fmt: skip
    return WorkerProcess(f"{group}-{name}", cmd, env, work)


def _wait(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout:.0f} s")
        time.sleep(0.1)


def _ready(url: str) -> bool:
    try:
        return requests.get(url + "/readyz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _answer(url: str, timeout: float) -> dict[str, Any]:
    """An answer, asked again after each 503's Retry-After (a rebalance settling)."""
    deadline = time.monotonic() + timeout
    while True:
        got = requests.get(url, timeout=30)
        if got.status_code == 200:
            answer: dict[str, Any] = got.json()
            return answer
        if got.status_code != 503 or time.monotonic() > deadline:
            raise RuntimeError(f"{url}: {got.status_code} {got.text}")
        time.sleep(float(got.headers.get("Retry-After", "1")))


class Hammer:
    """``threads`` clients asking ``url`` for ``paths`` in turn, until stopped."""

    def __init__(self, url: str, paths: list[str], threads: int) -> None:
        self.url, self.paths = url, paths
        self.latencies: list[float] = []
        self.refused = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]  # fmt: skip

    def _run(self, offset: int) -> None:
        session = requests.Session()
        i = offset
        while not self._stop.is_set():
            path = self.paths[i % len(self.paths)]
            i += 7
            t0 = time.perf_counter()
            try:
                got = session.get(f"{self.url}{path}", timeout=30)
            except requests.RequestException:
                self.refused += 1
                continue
            if got.status_code == 200:
                self.latencies.append(time.perf_counter() - t0)
            else:
                self.refused += 1

    def run_for(self, seconds: float) -> tuple[float, float, float]:
        """Lookups/s, p50 and p99 latency (ms)."""
        self.start()
        time.sleep(seconds)  # the measuring window
        self.stop()
        lat = sorted(self.latencies)
        if not lat:
            return 0.0, float("nan"), float("nan")
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        return len(lat) / seconds, statistics.median(lat) * 1e3, p99 * 1e3

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


def _fill(bootstrap: str, src: str, records: int, keys: int) -> None:
    writer = BulkWriter(bootstrap, partitioner="murmur2_random")
    pad = "x" * 48
    for i in range(records):  # ~100-byte JSON values, as the other benchmarks send
        value = f'{{"id":{i},"amount":12.5,"region":"eu-west-1","tag":"{pad}"}}'
        writer.send(src, value.encode(), f"key-{i % keys}".encode())
    writer.finish(f"{records} inputs to {src}")


def lookups(args: argparse.Namespace, bootstrap: str, work: Path, topics: list[str]) -> None:
    group = unique("bench-query")
    src, out = f"{group}-in", f"{group}-out"
    topics += [src, out]
    create_topics(bootstrap, [src, out], args.partitions)
    _fill(bootstrap, src, args.keys, args.keys)  # one count per key
    ports = {"a": _port(), "b": _port()}
    procs = [_worker(n, bootstrap, work, src, out, group, p) for n, p in ports.items()]
    url = f"http://127.0.0.1:{ports['a']}"
    reader = CommittedReader(bootstrap, out, args.partitions, target=args.keys)
    reader.start()
    try:
        _wait(lambda: reader.done_at is not None, args.timeout, "committed output")
        _wait(lambda: all(_ready(f"http://127.0.0.1:{p}") for p in ports.values()),
              args.timeout, "ready workers")  # fmt: skip
        local: list[str] = []
        forwarded: list[str] = []
        for i in range(min(args.keys, 400)):
            answer = _answer(f"{url}/v1/stores/{STORE}/keys/key-{i}", args.timeout)
            (local if answer["served_by"]["instance"] == "a" else forwarded).append(f"key-{i}")
        print(f"lookups against one worker, {args.threads} client threads, {args.seconds} s:")
        for what, keys in (("local", local), ("forwarded", forwarded)):
            paths = [f"/v1/stores/{STORE}/keys/{key}" for key in keys]
            rate, p50, p99 = Hammer(url, paths, args.threads).run_for(args.seconds)
            print(f"  {what:>9}: {rate:8.0f} lookups/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms")
    finally:
        reader.stop()
        for proc in procs:
            proc.stop()
        topics.extend(t for t in admin(bootstrap).list_topics(timeout=30).topics
                      if t.startswith(group) and t not in topics)  # fmt: skip


APPS = {"passthrough": "benchmarks.apps.passthrough:app", "count": APP}
MODES = ("no server", "server, no queries", "server + queries")


def _cost_run(
    args: argparse.Namespace, bootstrap: str, work: Path, topics: list[str], src: str,
    app: str, mode: str,
) -> tuple[float, float, float]:  # fmt: skip
    """One worker of ``app`` over all of ``src`` in ``mode``: (steady records/s, steady CPU
    us/rec, lookups/s answered meanwhile). Steady: from its first committed output to its
    last, so start-up (imports, joining the group) is left out; CPU is the whole process's,
    the server's thread included, which is the cost asked about."""
    group = unique("bench-query-cost")
    out = f"{group}-out"
    topics.append(out)
    create_topics(bootstrap, [out], args.partitions)
    port = None if mode == "no server" else _port()
    reader = CommittedReader(bootstrap, out, args.partitions, target=args.records)
    reader.start()
    proc = _worker("w", bootstrap, work, src, out, group, port, APPS[app])
    hammer = None
    try:
        if mode == "server + queries":
            # the count's keys; the passthrough has no store: the list of stores and their
            # tasks, which the live page asks for
            paths = (
                [f"/v1/stores/{STORE}/keys/key-{i}" for i in range(min(args.keys, 1000))]
                if app == "count"
                else ["/v1/stores"]
            )
            hammer = Hammer(f"http://127.0.0.1:{port}", paths, args.threads)
            hammer.start()
        _, cpu_end, mark = watch(f"{app} ({mode})", proc, reader, args.records, args.timeout)
        assert reader.done_at is not None and reader.first_at is not None
        assert cpu_end is not None and mark is not None
        steady_s = reader.done_at - reader.first_at
        steady_records = args.records - mark[1]
        asked = 0.0
        if hammer is not None:
            hammer.stop()
            asked = len(hammer.latencies) / (reader.done_at - proc.started_at)
        rate = steady_records / steady_s if steady_s > 0 else float("nan")
        return rate, (cpu_end - mark[0]) / steady_records * 1e6, asked
    finally:
        if hammer is not None:
            hammer.stop()
        reader.stop()
        proc.stop()
        topics.extend(t for t in admin(bootstrap).list_topics(timeout=30).topics
                      if t.startswith(group) and t not in topics)  # fmt: skip


def cost(args: argparse.Namespace, bootstrap: str, work: Path, topics: list[str]) -> None:
    """Each app in each mode, ``--rounds`` times, the modes interleaved within a round so
    drift in the machine hits them alike; medians with the round-by-round range."""
    src = unique("bench-query-cost-in")
    topics.append(src)
    create_topics(bootstrap, [src], args.partitions)
    _fill(bootstrap, src, args.records, args.keys)
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for _ in range(args.rounds):
        for app in APPS:
            for mode in MODES:
                got = _cost_run(args, bootstrap, work, topics, src, app, mode)
                results.setdefault((app, mode), []).append(got)
    print(
        f"the server's cost: one worker over {args.records:,} records ({args.keys:,} keys, "
        f"{args.partitions} partitions), {args.threads} client threads asking it in the last "
        f"mode (the count: its keys; the passthrough: /v1/stores); {args.rounds} interleaved "
        "round(s), median [min-max]; steady state (first committed output to last)"
    )
    print(f"  {'app':<11} {'mode':<19} {'records/s':>22} {'CPU us/rec':>20} {'lookups/s':>10}")
    for (app, mode), runs in results.items():
        cells = []
        for i, fmt in ((0, ",.0f"), (1, ".1f")):
            values = [r[i] for r in runs]
            cells.append(
                f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"
            )
        asked = statistics.median(r[2] for r in runs)
        print(f"  {app:<11} {mode:<19} {cells[0]:>22} {cells[1]:>20} {asked:>10,.0f}")
    for app in APPS:
        base = statistics.median(r[1] for r in results[(app, MODES[0])])
        for mode in MODES[1:]:
            cpu = statistics.median(r[1] for r in results[(app, mode)])
            print(f"  {app}: {mode} costs {100 * (cpu / base - 1):+.1f} % CPU per record")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", help="use this broker instead of starting one")
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the cost part")
    p.add_argument("--skip-lookups", action="store_true", help="only the cost part")
    args = p.parse_args()
    exit_on_sigterm()
    topics: list[str] = []
    with broker(args.bootstrap) as bootstrap, tempfile.TemporaryDirectory() as tmp:
        try:
            if not args.skip_lookups:
                lookups(args, bootstrap, Path(tmp), topics)
            cost(args, bootstrap, Path(tmp), topics)
        finally:
            if args.bootstrap:
                delete_topics(bootstrap, topics)


if __name__ == "__main__":
    main()
