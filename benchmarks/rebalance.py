"""Rebalance pauses and failover time of a stateful app, per group protocol and standby count.

For each configuration (keys x standbys x protocol) the script writes one input per key into
6 partitions, starts worker w0 of ``benchmarks.apps.totals_bench:app`` (in-memory store) and
waits until it has committed them all, then keeps input flowing at ``--rate`` records/s over
random keys while it changes the group:

- scale-out: start w1 (1 -> 2). pause = the longest time any partition's committed output
  stops, as a read_committed reader sees it arrive, from the change until the group has
  settled (each member owns partitions, all partitions owned once, committed offsets caught
  up with the input written by then).
- failover: SIGKILL w1 for good (2 -> 1; with standbys, first wait until w0's warm copies
  are at lag 0). failover s = from the SIGKILL until committed output has arrived again for
  every partition w1 owned; restored = the records w0 logs as restored for them.
- scale-in: start w1 again, then SIGTERM it (2 -> 1): pause as for scale-out.

At the end the last committed total of every key must equal its number of inputs. A
configuration the code refuses (a worker exits before owning anything) is reported as
refused, with the worker's last error line; one that fails later as failed.

    python -m benchmarks.rebalance                          # full matrix, own broker
    python -m benchmarks.rebalance --keys 100000 --protocols eager,consumer --standbys 0
    python -m benchmarks.rebalance --bootstrap 127.0.0.1:9092 --no-chart
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Message, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.chart import captured, load_average, machine_summary, require_matplotlib
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
    read_all,
    unique,
)

APP_TARGET = "benchmarks.apps.totals_bench:app"
PARTITIONS = 6
STORE = "totals"
SESSION_MS = 6_000  # classic protocol: the broker's group.min.session.timeout.ms
PROTOCOLS = {
    "eager": ["-c", f"consumer.session.timeout.ms={SESSION_MS}"],
    "cooperative": [
        "-c", f"consumer.session.timeout.ms={SESSION_MS}",
        "-c", "consumer.partition.assignment.strategy=cooperative-sticky",
    ],
    "consumer": ["-c", "group.protocol=consumer"],  # session timeout: the broker's
}  # fmt: skip
_EVENT = re.compile(r" eokafka\.[\w.]+: (assigned|revoked|lost) (.*)$")
_RESTORED = re.compile(rf"restored store {STORE}\[(\d+)\]: (\d+) records")
_CHART = Path("docs/benchmarks/rebalance.png")


def key_partition(key: bytes) -> int:
    return int(key[1:]) % PARTITIONS


class Refused(Exception):
    """A worker exited: ``refused`` before it owned anything, else ``failed``."""

    def __init__(self, status: str, line: str) -> None:
        super().__init__(f"{status}: {line}")
        self.status, self.line = status, line


class Member:
    """One worker process with a fixed instance id and metrics port; what its log says it
    owns, read incrementally so eager and incremental rebalances read alike."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], work: Path) -> None:
        self.name, self.cmd, self.env, self.work = name, cmd, env, work
        self.port = int(cmd[cmd.index("--metrics-port") + 1])
        self.proc: WorkerProcess | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        self.proc = WorkerProcess(f"{self.name}.{self.runs}", self.cmd, self.env, self.work)

    def log(self) -> str:
        assert self.proc is not None
        try:
            return self.proc.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def owned(self, topic: str) -> set[int]:
        pattern = re.compile(rf"{re.escape(topic)}\[(\d+)\]")
        owned: set[int] = set()
        for line in self.log().splitlines():
            m = _EVENT.search(line)
            if m is not None:
                parts = {int(p) for p in pattern.findall(m.group(2))}
                owned = owned | parts if m.group(1) == "assigned" else owned - parts
        return owned

    def check(self) -> None:
        assert self.proc is not None
        if self.proc.alive():
            return
        lines = [x for x in self.log().splitlines() if x.strip()]
        errors = [x for x in lines if "error" in x.lower()] or lines or ["(no output)"]
        ever = any(_EVENT.search(x) and "assigned" in x for x in lines)
        raise Refused("failed" if ever else "refused", errors[-1].strip()[:200])

    def standby_lag(self) -> dict[int, float]:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        return {
            int(s.labels["partition"]): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "eokafka_standby_lag" and s.labels.get("store") == STORE
        }


class Feeder(threading.Thread):
    """Input at a steady rate over random existing keys; remembers how many per key."""

    def __init__(self, writer: BulkWriter, topic: str, keys: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.writer, self.topic, self.keys, self.rate = writer, topic, keys, rate
        self.counts: dict[int, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        start, n = time.monotonic(), 0
        while not self.done.is_set():
            while n < int((time.monotonic() - start) * self.rate):
                k = (n * 7_919) % self.keys
                self.counts[k] = self.counts.get(k, 0) + 1
                self.writer.send(
                    self.topic, b'{"amount": 1}', f"k{k}".encode(), partition=k % PARTITIONS
                )
                n += 1
            self.writer.producer.poll(0)
            self.done.wait(0.01)  # pacing of a steady input rate


class Arrivals:
    """When committed output arrives, per input partition (reader batches, monotonic), and
    the newest record timestamp (ms) per partition in each batch."""

    def __init__(self) -> None:
        self.newest: list[tuple[float, dict[int, int]]] = []
        self.lock = threading.Lock()

    def on_batch(self, msgs: list[Message], now: float) -> None:
        newest: dict[int, int] = {}
        for m in msgs:
            if m.key() is not None:
                p = key_partition(m.key())
                newest[p] = max(newest.get(p, -1), m.timestamp()[1])
        with self.lock:
            self.newest.append((now, newest))

    def times(self, p: int) -> list[float]:
        with self.lock:
            return [t for t, newest in self.newest if p in newest]

    def pause(self, t0: float, t1: float) -> float:
        """The longest gap between arrivals of one partition that overlaps [t0, t1]."""
        worst = 0.0
        for p in range(PARTITIONS):
            ts = self.times(p)
            gaps = (b - a for a, b in zip(ts, ts[1:], strict=False) if b >= t0 and a <= t1)
            worst = max([worst, *gaps])
        return worst

    def first_after(self, p: int, t: float, wall_ms: int) -> float | None:
        """The first arrival after ``t`` of output stamped after ``wall_ms``: output the
        reader only sees late, but which was committed before the fault, doesn't count."""
        with self.lock:
            return next(
                (x for x, newest in self.newest if x > t and newest.get(p, -1) > wall_ms), None
            )


@dataclass
class Result:
    protocol: str
    keys: int
    standbys: int
    status: str = "ok"
    scale_out: float | None = None
    scale_in: float | None = None
    failover: float | None = None
    restored: int | None = None
    check: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.protocol} {self.keys // 1000:,}k sb{self.standbys}"


def wait(cond: object, timeout: float, what: str, members: list[Member]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for m in members:
            m.check()
        if cond():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            raise Refused("failed", f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)  # poll interval


def group_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    client = admin(bootstrap)
    result = client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    return {
        tp.partition: tp.offset
        for tp in result[group].result(30).topic_partitions
        if tp.topic == topic
    }


def settle(bootstrap: str, group: str, topic: str, live: list[Member], what: str) -> float:
    """Wait until each live member owns partitions, all are owned once, and the committed
    offsets reach the input's end as it was then; return the monotonic time."""

    def owned_once() -> bool:
        sets = [m.owned(topic) for m in live]
        return all(sets) and sorted(p for s in sets for p in s) == list(range(PARTITIONS))

    wait(owned_once, 300, f"{what}: the group to settle", live)
    ends = input_ends(bootstrap, topic)
    wait(
        lambda: all(
            group_offsets(bootstrap, group, topic).get(p, -1) >= n for p, n in ends.items()
        ),
        600,
        f"{what}: committed offsets to reach {ends}",
        live,
    )
    return time.monotonic()


def input_ends(bootstrap: str, topic: str) -> dict[int, int]:
    """High watermarks of the (non-transactional) input."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("bench-ends")})
    try:
        return {
            p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in range(PARTITIONS)
        }
    finally:
        c.close()


def run_config(
    bootstrap: str, protocol: str, keys: int, standbys: int, work: Path, args: argparse.Namespace
) -> Result:
    result = Result(protocol, keys, standbys)
    app_id = unique(f"bench-rb-{protocol}")
    work = work / app_id  # logs of this configuration only
    work.mkdir()
    src, out = f"{app_id}-in", f"{app_id}-out"
    create_topics(bootstrap, [src, out], PARTITIONS)
    env = child_env(BENCH_APP_ID=app_id, BENCH_INPUT=src, BENCH_OUTPUT=out)
    env = {k: v for k, v in env.items() if not k.startswith("EOKAFKA_")}
    if standbys:
        env["BENCH_STANDBYS"] = str(standbys)
    members = []
    for i, name in enumerate(("w0", "w1")):
        cmd = python_cmd(
            "-m", "eokafka", "run", APP_TARGET,
            "--bootstrap-servers", bootstrap,
            "--state-dir", str(work / "state"),
            "--instance-id", name,
            "--metrics-port", str(args.metrics_port + i),
            *PROTOCOLS[protocol],
        )  # fmt: skip
        members.append(Member(name, cmd, env, work))
    w0, w1 = members
    writer = BulkWriter(bootstrap)
    for k in range(keys):
        writer.send(src, b'{"amount": 1}', f"k{k}".encode(), partition=k % PARTITIONS)
    writer.finish("the initial inputs", timeout=300)
    arrivals = Arrivals()
    reader = CommittedReader(bootstrap, out, PARTITIONS, on_batch=arrivals.on_batch)
    feeder = Feeder(writer, src, keys, args.rate)
    print(f"{result.label}: {keys:,} keys loaded; logs in {work}", flush=True)
    try:
        reader.start()
        w0.start()
        settle(bootstrap, app_id, src, [w0], "w0 alone")
        feeder.start()
        t0 = time.monotonic()
        w1.start()
        result.scale_out = arrivals.pause(t0, settle(bootstrap, app_id, src, [w0, w1], "1 -> 2"))
        if standbys:
            # The feed keeps writing: a caught-up standby often has only the last commit's
            # marker left before the high watermark, which its position counts as 1.
            wait(
                lambda: all((w0.standby_lag().get(p) or 9) <= 1 for p in w1.owned(src)),
                600, "w0's standbys caught up (lag 0 or a commit marker)", [w0, w1],
            )  # fmt: skip
        taken = w1.owned(src)
        mark = len(w0.log())
        killed, killed_ms = time.monotonic(), int(time.time() * 1000)
        assert w1.proc is not None
        w1.proc.kill()
        settle(bootstrap, app_id, src, [w0], "the failover")
        wait(
            lambda: all(arrivals.first_after(p, killed, killed_ms) for p in taken),
            120, "output", [w0],
        )  # fmt: skip
        firsts = [arrivals.first_after(p, killed, killed_ms) or killed for p in taken]
        result.failover = max(firsts) - killed
        result.restored = sum(
            int(m.group(2)) for m in _RESTORED.finditer(w0.log()[mark:]) if int(m.group(1)) in taken
        )
        w1.start()
        settle(bootstrap, app_id, src, [w0, w1], "w1 back")
        t0 = time.monotonic()
        assert w1.proc is not None
        w1.proc.stop()
        result.scale_in = arrivals.pause(t0, settle(bootstrap, app_id, src, [w0], "2 -> 1"))
        feeder.done.set()
        feeder.join(60)
        writer.finish("the flowing inputs")
        settle(bootstrap, app_id, src, [w0], "the last inputs")
        assert w0.proc is not None
        w0.proc.stop()
        result.check = check_totals(bootstrap, out, keys, feeder.counts)
    except Refused as exc:
        result.status, result.check = exc.status, exc.line
    finally:
        feeder.done.set()
        reader.stop()
        for m in members:
            if m.proc is not None:
                m.proc.kill()
        if args.bootstrap:
            existing = admin(bootstrap).list_topics(timeout=30).topics
            delete_topics(bootstrap, [t for t in existing if t.startswith(app_id)])
    print(f"{result.label}: {result.status} {result.check}", flush=True)
    return result


def check_totals(bootstrap: str, out: str, keys: int, flowing: dict[int, int]) -> str:
    last: dict[int, int] = {}
    for m in read_all(bootstrap, out, PARTITIONS):
        last[int(m.key()[1:])] = json.loads(m.value())["total"]
    wrong = [k for k in range(keys) if last.get(k) != 1 + flowing.get(k, 0)]
    if wrong:
        return f"WRONG: {len(wrong)} of {keys:,} keys end on a wrong total, e.g. k{wrong[0]}"
    return f"ok: {keys:,} keys exact"


def _fmt(x: float | int | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"\nRebalance pauses and failover, count by key (in-memory store), {PARTITIONS} "
        f"partitions, {args.rate:,.0f} inputs/s flowing; classic protocols with "
        f"session.timeout.ms={SESSION_MS}, consumer protocol with the broker's"
    )
    head = (
        f"{'protocol':<12} {'keys':>9} {'standbys':>8} {'status':<8} {'scale-out s':>11} "
        f"{'scale-in s':>10} {'failover s':>10} {'restored':>9}  check"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r.protocol:<12} {r.keys:>9,} {r.standbys:>8} {r.status:<8} "
            f"{_fmt(r.scale_out, '.2f'):>11} {_fmt(r.scale_in, '.2f'):>10} "
            f"{_fmt(r.failover, '.2f'):>10} {_fmt(r.restored, ',d'):>9}  {r.check}"
        )
    print(
        "scale-out / scale-in s = the longest stop of any partition's committed output from "
        "the change until the group settled; failover s = SIGKILL of w1 until committed "
        "output arrived again for all its partitions; restored = records w0 restored for them."
    )


def draw(path: Path, results: list[Result], machine: str, note: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if r.status == "ok"]
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(results) + 3), 5.5))
    xs = range(len(results))
    width = 0.27
    for i, (label, get) in enumerate(
        (
            ("scale-out pause", lambda r: r.scale_out),
            ("scale-in pause", lambda r: r.scale_in),
            ("failover", lambda r: r.failover),
        )
    ):
        values = [get(r) if r in shown else 0.0 for r in results]
        bars = ax.bar([x + (i - 1) * width for x in xs], values, width, label=label)
        labels = [
            f"{v:.1f}" if r in shown else r.status for v, r in zip(values, results, strict=True)
        ]
        ax.bar_label(bars, labels=labels, fontsize=7, padding=2)
    ax.set_xticks(list(xs), [r.label for r in results], rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("seconds")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8)
    ax.set_title("Rebalance pause and failover time (lower is better)", fontsize=11)
    caption = f"Machine: {machine}.{' ' + note if note else ''}"
    fig.text(0.01, 0.01, caption, fontsize=7, va="bottom", ha="left", wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", default="100000,1000000", help="comma-separated key counts")
    p.add_argument("--standbys", default="0,1", help="comma-separated num_standby_replicas")
    p.add_argument("--protocols", default=",".join(PROTOCOLS), help="eager,cooperative,consumer")
    p.add_argument("--rate", type=float, default=1_000, help="inputs/s while the group changes")
    p.add_argument("--metrics-port", type=int, default=39190, help="w0's port; w1 uses +1")
    p.add_argument("--bootstrap", help="use this broker instead of starting a dev broker")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="dev broker port (and +1)")
    p.add_argument("--chart", type=Path, default=_CHART, help="PNG to write (and a .txt beside)")
    p.add_argument("--no-chart", action="store_true", help="print the table only")
    p.add_argument("--note", default="", help="a remark for the chart and table, e.g. the load")
    args = p.parse_args()
    protocols = [x for x in args.protocols.split(",") if x]
    if any(x not in PROTOCOLS for x in protocols):
        p.error(f"--protocols: choose from {', '.join(PROTOCOLS)}")
    matrix = [
        (proto, int(k), int(s))
        for k in args.keys.split(",")
        for s in args.standbys.split(",")
        for proto in protocols
    ]
    if not args.no_chart:
        require_matplotlib()
    exit_on_sigterm()
    os.chdir(Path(__file__).resolve().parent.parent)
    load = load_average()
    results = []
    with (
        broker(args.bootstrap, args.port) as bootstrap,
        tempfile.TemporaryDirectory(prefix="eokafka-bench-") as tmp,
    ):
        for proto, keys, standbys in matrix:
            results.append(run_config(bootstrap, proto, keys, standbys, Path(tmp), args))
    with captured() as table:
        print_table(results, args)
    machine = machine_summary(load)
    footer = f"machine: {machine}" + (f"\nnote: {args.note}" if args.note else "")
    print(table.getvalue().rstrip("\n"))
    print(footer)
    if not args.no_chart:
        args.chart.with_suffix(".txt").parent.mkdir(parents=True, exist_ok=True)
        args.chart.with_suffix(".txt").write_text(table.getvalue().lstrip("\n") + footer + "\n")
        draw(args.chart, results, machine, args.note)
        print(f"chart: {args.chart}; table: {args.chart.with_suffix('.txt')}")
    if any(r.check.startswith("WRONG") for r in results):
        raise SystemExit("FAILED: some totals are wrong")


if __name__ == "__main__":
    main()
