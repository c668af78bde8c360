"""Exactly-once passthrough throughput: hand loops vs eokafka vs Quix Streams vs Kafka Streams.

One broker, one input topic filled once, and each contender in turn (never concurrently:
the machine is small) copying it to a fresh output topic of its own with its own consumer
group, as a process of its own. The clock runs from process start until a read_committed
reader in this process has seen all N records; "steady" figures start the clock at the
first committed output instead, which leaves out interpreter start-up, group join and
transactional-producer initialisation. Afterwards every output topic is read again from the
start to check that each input id is there exactly once. Values are JSON, parsed and
written back by every contender but the bytes hand loop ``hand`` (``--values bytes``: copied
untouched); ``hand-json`` is the hand loop doing the same JSON work (orjson). CPU is reported
twice: the CPU spent before the first committed output (start-up: interpreter, imports,
producer, group join) and the CPU per record after it (steady state).
The table goes to the screen and, with the chart, to ``--chart`` (a PNG and a .txt).

    python -m benchmarks.passthrough                  # 1,000,000 records, own broker
    python -m benchmarks.passthrough --records 50000 --bootstrap 127.0.0.1:39092
    python -m benchmarks.passthrough --rounds 3       # interleaved repeats, medians
    python -m benchmarks.passthrough --contenders eokafka --baseline /tmp/base --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, Producer

from benchmarks import hand_loop, kstreams
from benchmarks.chart import add_options, captured, load_average, publish, require_matplotlib
from benchmarks.common import (
    DEFAULT_PORT,
    BulkWriter,
    CommittedReader,
    WorkerProcess,
    add_baseline_option,
    add_profile_option,
    broker,
    child_env,
    count_ids,
    create_topics,
    delete_topics,
    exactly_once_report,
    exit_on_sigterm,
    from_tree,
    in_tree,
    keep_logs_if_failed,
    python_cmd,
    unique,
    watch,
    with_baselines,
)

CONTENDERS = ("hand", "hand-json", "eokafka", "quix", "kstreams")
HAND_VALUES = {"hand": "bytes", "hand-json": "json"}  # the hand loops always do their own
CHART = Path("docs/benchmarks/passthrough.png")
VALUE_BYTES = 100


@dataclass
class Result:
    name: str
    records: int
    total_s: float
    first_output_s: float
    steady_records: int
    steady_s: float
    cpu_s: float | None
    steady_cpu_us: float | None
    peak_rss_mb: float | None
    exit_code: int | None
    verdict: str
    exactly_once: bool
    startup_cpu_s: float | None = None  # CPU seconds at the first committed output

    @property
    def total_rate(self) -> float:
        return self.records / self.total_s

    @property
    def steady_rate(self) -> float:
        return self.steady_records / self.steady_s if self.steady_s > 0 else float("nan")

    def announce(self) -> None:
        print(
            f"{self.name}: {self.total_rate:,.0f} records/s total, {self.steady_rate:,.0f} "
            f"records/s steady; output {self.verdict}; exit code {self.exit_code}",
            flush=True,
        )


def check_settings_match() -> None:
    """The hand loop is only a fair floor if it runs with eokafka's librdkafka settings."""
    from eokafka.client_configs import consumer_config, producer_config
    from eokafka.config import Settings

    s = Settings(application_id="g", bootstrap_servers="b")
    pairs = (
        ("consumer", hand_loop.consumer_conf("b", "g", "i"), consumer_config(s, "i")),
        ("producer", hand_loop.producer_conf("b", "g", "i"), producer_config(s, "i")),
    )
    for client, hand, eo in pairs:
        if hand != eo:
            diff = {
                k: (hand.get(k), eo.get(k))
                for k in hand.keys() | eo.keys()
                if hand.get(k) != eo.get(k)
            }
            sys.exit(f"hand loop {client} settings differ from eokafka's (hand, eokafka): {diff}")


def json_value(i: int) -> bytes:
    """A ~100-byte JSON object; the id is also the record key, which verification reads."""
    head = f'{{"id":{i},"user":"user-{i % 9973}","amount":{i % 100_000 / 100},"note":"'
    return (head + "x" * max(0, VALUE_BYTES - len(head) - 2) + '"}').encode()


def produce_input(bootstrap: str, topic: str, n: int, partitions: int) -> None:
    """Fill the input once, round-robin over the partitions so they are equally loaded."""
    writer = BulkWriter(bootstrap)
    started = time.monotonic()
    for i in range(n):
        writer.send(topic, json_value(i), str(i).encode(), partition=i % partitions)
    writer.finish("input")
    print(
        f"input: {n} records of {VALUE_BYTES} B JSON over {partitions} partitions "
        f"written in {time.monotonic() - started:.1f} s",
        flush=True,
    )


def warm_up(bootstrap: str, topic: str) -> None:
    """One tiny transaction and group commit, so that whichever contender runs first does not
    also pay for a freshly started broker loading its coordinators."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique("bench-wu")})
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(topic, b"warm-up")
    producer.commit_transaction(60)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("bench-wu"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while consumer.poll(0.5) is None:
            if time.monotonic() > deadline:
                raise TimeoutError("warm-up: the broker did not deliver one record in 60 s")
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()


def _flags(**options: str) -> list[str]:
    """``input="x"`` -> ``["--input", "x"]``: keeps the command lines below readable."""
    return [item for k, v in options.items() for item in (f"--{k.replace('_', '-')}", v)]


def hand_cmd(
    bootstrap: str, src: str, out: str, group: str, args: argparse.Namespace, **more: str
) -> list[str]:
    """The hand loop's command line; ``more``: its --values, --mode and --changelog."""
    return python_cmd(
        "-m",
        "benchmarks.hand_loop",
        *_flags(
            bootstrap=bootstrap,
            input=src,
            output=out,
            group=group,
            instance_id="bench-0",
            commit_interval_ms=str(args.commit_interval_ms),
            commit_every=str(args.commit_every),
            batch_size=str(args.batch_size),
            **more,
        ),
    )


def contender_cmd(
    name: str, bootstrap: str, src: str, out: str, group: str, work: Path, args: argparse.Namespace
) -> tuple[list[str], dict[str, str]]:
    # Settings a user might have exported must not leak into the measured worker.
    env = {k: v for k, v in child_env().items() if not k.startswith("EOKAFKA_")}
    interval = str(args.commit_interval_ms)
    every = str(args.commit_every)
    if name in HAND_VALUES:
        return hand_cmd(bootstrap, src, out, group, args, values=HAND_VALUES[name]), env
    if name.startswith("eokafka"):
        # batch size and record-count trigger have no CLI option; the environment sets them.
        env.update(
            BENCH_APP_ID=group,
            BENCH_INPUT=src,
            BENCH_OUTPUT=out,
            BENCH_VALUES=args.values,
            EOKAFKA_BATCH_SIZE=str(args.batch_size),
            EOKAFKA_COMMIT_EVERY=every,
        )
        return python_cmd(
            "-m",
            "eokafka",
            "run",
            "benchmarks.apps.passthrough:app",
            *_flags(
                bootstrap_servers=bootstrap,
                state_dir=str(work / "eokafka-state"),
                instance_id="bench-0",
                commit_interval_ms=interval,
                processes=str(processes_of(name)),
            ),
        ), env
    if name == "quix":
        return python_cmd(
            "-m",
            "benchmarks.quix_passthrough",
            *_flags(
                bootstrap=bootstrap,
                input=src,
                output=out,
                group=group,
                state_dir=str(work / "quix-state"),
                commit_interval_ms=interval,
                commit_every=every,
                values=args.values,
            ),
        ), env
    if name == "kstreams":
        return kstreams.command(
            mode="passthrough",
            values=args.values,
            bootstrap=bootstrap,
            input=src,
            output=out,
            application_id=group,
            state_dir=work / f"kstreams-state-{group}",
            commit_interval_ms=args.commit_interval_ms,
            batch_size=args.batch_size,
        ), env
    raise ValueError(name)


def processes_of(name: str) -> int:
    """``eokafka`` runs one worker process, ``eokafka-p<N>`` runs N (``--processes``)."""
    return int(name.rpartition("-p")[2]) if name.startswith("eokafka-p") else 1


def expand_processes(names: list[str], processes: list[int]) -> list[str]:
    """Each eokafka contender once per ``--processes`` count, in that order."""
    out: list[str] = []
    for name in names:
        if name == "eokafka":
            out.extend("eokafka" if n == 1 else f"eokafka-p{n}" for n in processes)
        else:
            out.append(name)
    return out


def run_contender(
    name: str, bootstrap: str, src: str, out: str, work: Path, args: argparse.Namespace
) -> Result:
    n, parts = args.records, args.partitions
    group = unique(f"bench-pt-{name}")
    base, tree = from_tree(name, args.baseline)
    cmd, env = contender_cmd(base, bootstrap, src, out, group, work, args)
    reader = CommittedReader(bootstrap, out, parts, target=n)
    reader.start()
    print(f"{name}: running (log {work / (name + '.log')}) ...", flush=True)
    proc = WorkerProcess(name, cmd, in_tree(env, tree), work, tree)
    cpu = rss = steady_cpu_us = None
    cpu_mark: tuple[float, int] | None = None
    try:
        profile = None if args.profile is None else args.profile / f"{name}.folded"
        rss, cpu, cpu_mark = watch(name, proc, reader, n, args.timeout, profile)
        if cpu is not None and cpu_mark is not None and reader.count > cpu_mark[1]:
            steady_cpu_us = (cpu - cpu_mark[0]) / (reader.count - cpu_mark[1]) * 1e6
    finally:
        code = proc.stop()
        reader.stop()
    assert reader.first_at is not None and reader.done_at is not None
    ok, verdict = exactly_once_report(count_ids(bootstrap, out, parts), range(n))
    result = Result(
        name=name,
        records=n,
        total_s=reader.done_at - proc.started_at,
        first_output_s=reader.first_at - proc.started_at,
        steady_records=n - reader.first_count,
        steady_s=reader.done_at - reader.first_at,
        cpu_s=cpu,
        steady_cpu_us=steady_cpu_us,
        peak_rss_mb=rss,
        exit_code=code,
        verdict=verdict,
        exactly_once=ok,
        startup_cpu_s=None if cpu_mark is None else cpu_mark[0],
    )
    result.announce()
    return result


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def _median(results: list[Result], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in results)


def _cpu_ratio(a: list[Result], b: list[Result], attr: str, what: str) -> str:
    """`` x.xx`` the ratio of the medians of a CPU figure, with its round-by-round range."""
    pairs = [
        (getattr(x, attr), getattr(y, attr))
        for x, y in zip(a, b, strict=False)
        if getattr(x, attr) and getattr(y, attr)
    ]
    if not pairs:
        return ""
    ratios = [x / y for x, y in pairs]
    mid = statistics.median(x for x, _ in pairs) / statistics.median(y for _, y in pairs)
    line = f", {mid:.2f}x {what}"
    if len(ratios) > 1:
        line += f" (round by round {min(ratios):.2f}x to {max(ratios):.2f}x)"
    return line


def ratio_line(a: str, b: str, runs: dict[str, list[Result]]) -> str:
    """The ratio of the medians, and the spread of the ratios round by round.

    Rounds are interleaved, so round i of ``a`` and of ``b`` ran back to back under the same
    load; the spread shows how much one run's ratio can be trusted on a shared machine.
    """
    total = _median(runs[a], "total_rate") / _median(runs[b], "total_rate")
    steady = _median(runs[a], "steady_rate") / _median(runs[b], "steady_rate")
    line = f"{a}/{b}: {total:.2f}x total, {steady:.2f}x steady-state records/s"
    by_round = [x.total_rate / y.total_rate for x, y in zip(runs[a], runs[b], strict=False)]
    if len(by_round) > 1:
        line += f" (round by round {min(by_round):.2f}x to {max(by_round):.2f}x total)"
    line += _cpu_ratio(runs[a], runs[b], "steady_cpu_us", "steady CPU/record")
    line += _cpu_ratio(runs[a], runs[b], "startup_cpu_s", "start-up CPU")
    return line


def by_contender(results: list[Result]) -> dict[str, list[Result]]:
    """Each contender's runs, in the order they ran."""
    runs: dict[str, list[Result]] = {}
    for r in results:
        runs.setdefault(r.name, []).append(r)
    return runs


def _cpu_range(results: list[Result], attr: str, what: str, spec: str) -> str:
    """``, <median> <what> (<min>-<max>)`` over the runs that measured it."""
    xs = [getattr(r, attr) for r in results if getattr(r, attr) is not None]
    if not xs:
        return ""
    mid, lo, hi = statistics.median(xs), min(xs), max(xs)
    return f", {mid:{spec}}{what} ({lo:{spec}} to {hi:{spec}})"


def print_summary(runs: dict[str, list[Result]], pairs: list[tuple[str, str]]) -> None:
    """The medians (when a contender ran more than once), then a ratio line per pair run."""
    if any(len(rs) > 1 for rs in runs.values()):
        for name, rs in runs.items():
            print(
                f"median of {len(rs)} {name} run(s): {_median(rs, 'total_rate'):,.0f} "
                f"records/s total, {_median(rs, 'steady_rate'):,.0f} records/s steady"
                f"{_cpu_range(rs, 'steady_cpu_us', ' CPU us/rec', '.1f')}"
                f"{_cpu_range(rs, 'startup_cpu_s', ' start-up CPU s', '.2f')}"
            )
    for a, b in pairs:
        if a in runs and b in runs:
            print(ratio_line(a, b, runs))


def title(args: argparse.Namespace) -> str:
    return (
        f"Exactly-once passthrough, {args.records:,} records x {VALUE_BYTES} B "
        f"{'JSON values parsed and rewritten' if args.values == 'json' else 'bytes'} over "
        f"{args.partitions} partitions; commit every {args.commit_interval_ms} ms or "
        f"{args.commit_every:,} records; batch {args.batch_size}"
    )


HOW = (
    "Each contender is one process, run one after another on the same input (4 partitions) "
    "into its own output topic; the hand loop copies bytes, hand-json parses and rewrites each "
    "value with orjson. records/s = N / seconds "
    "from process start until a read_committed reader has seen all N outputs; steady = from "
    "the first committed output to the last; CPU us/record = the worker's user+system time "
    "(/proc) per record after its first output; start CPU s = its CPU time at the first "
    "output (start-up); peak RSS = its VmHWM. Each output was "
    "re-read read_committed and checked for every input exactly once (the table has the "
    "verdicts). The broker (one node) runs on the same machine."
)


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print(title(args))
    head = (
        f"{'contender':<10} {'records/s':>10} {'seconds':>8} {'steady rec/s':>12} "
        f"{'steady s':>8} {'1st out s':>9} {'CPU s':>6} {'start CPU s':>11} {'CPU us/rec':>10} "
        f"{'peak RSS MB':>11}  exactly once (read_committed re-read)"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r.name:<10} {r.total_rate:>10,.0f} {r.total_s:>8.2f} {r.steady_rate:>12,.0f} "
            f"{r.steady_s:>8.2f} {r.first_output_s:>9.2f} {_fmt(r.cpu_s, '.1f'):>6} "
            f"{_fmt(r.startup_cpu_s, '.2f'):>11} {_fmt(r.steady_cpu_us, '.1f'):>10} "
            f"{_fmt(r.peak_rss_mb, '.1f'):>11}  {'yes' if r.exactly_once else 'NO'}: {r.verdict}"
        )
    runs = by_contender(results)
    pairs = [("eokafka", other) for other in ("hand", "hand-json", "quix", "kstreams")]
    pairs += [(name, "eokafka") for name in runs if name.startswith("eokafka-p")]
    print_summary(runs, pairs)
    print(
        "records/s = N / seconds from process start until a read_committed reader has seen "
        "all N; steady = records after the first committed output / seconds from the first "
        "to the last (start-up excluded); CPU s = the worker's user+system time at the end; "
        "start CPU s = its CPU time at the first committed output (start-up); "
        "CPU us/rec = its CPU per record after the first output; peak RSS = its VmHWM "
        "(with eokafka-p<N>: summed over the supervisor and its N worker processes)."
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--bootstrap", help="use this broker instead of starting a dev broker")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="dev broker port (and +1)")
    p.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"comma-separated, run in this order (of {', '.join(CONTENDERS)})",
    )
    p.add_argument(
        "--rounds", type=int, default=1, help="run the contenders this many times, interleaved"
    )
    p.add_argument("--commit-interval-ms", type=int, default=100)
    p.add_argument(
        "--commit-every",
        type=int,
        default=10_000,
        help="also commit after this many records (eokafka's default)",
    )
    p.add_argument("--batch-size", type=int, default=1_000)
    p.add_argument("--timeout", type=float, default=900, help="seconds per contender")
    p.add_argument(
        "--processes",
        default="1",
        help="comma-separated worker process counts for eokafka (eokafka run --processes N): "
        "eokafka runs once per count, as 'eokafka' (1) and 'eokafka-p<N>'; CPU and RSS are "
        "then summed over the worker processes",
    )
    add_profile_option(p)
    add_baseline_option(p)
    add_options(p, CHART)
    args = p.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    names = [c.strip() for c in args.contenders.split(",") if c.strip()]
    if not names or any(c not in CONTENDERS for c in names):
        p.error(f"--contenders: choose from {', '.join(CONTENDERS)}")
    try:
        processes = [int(n) for n in args.processes.split(",") if n.strip()]
    except ValueError:
        processes = []
    if not processes or min(processes) < 1:
        p.error("--processes: comma-separated positive ints, e.g. 1,2")
    names = expand_processes(names, processes)
    names = with_baselines(names, args.baseline, lambda n: n.startswith("eokafka"))

    exit_on_sigterm()
    check_settings_match()
    os.chdir(Path(__file__).resolve().parent.parent)
    if not args.no_chart:
        require_matplotlib()
    if "kstreams" in names:
        kstreams.ensure_built()  # before any clock runs
    load_at_start = load_average()
    results: list[Result] = []
    with (
        broker(args.bootstrap, args.port) as bootstrap,
        tempfile.TemporaryDirectory(prefix="eokafka-bench-") as tmp,
    ):
        work = Path(tmp)
        src = unique("bench-pt-in")
        topics = [src]
        try:
            warm = unique("bench-pt-warm-up")
            topics.append(warm)
            create_topics(bootstrap, [src], args.partitions)
            create_topics(bootstrap, [warm], 1)
            warm_up(bootstrap, warm)
            produce_input(bootstrap, src, args.records, args.partitions)
            for name in [n for _ in range(args.rounds) for n in names]:
                out = unique(f"bench-pt-out-{name}")
                topics.append(out)
                create_topics(bootstrap, [out], args.partitions)
                results.append(run_contender(name, bootstrap, src, out, work, args))
            keep_logs_if_failed(work, all(r.exactly_once for r in results))
        finally:
            if args.bootstrap:
                delete_topics(bootstrap, topics)
    with captured() as table:
        print_table(results, args)
    chart = None if args.no_chart else args.chart
    publish(table.getvalue(), chart, title(args), results, HOW, load_at_start, args.note)
    if not all(r.exactly_once for r in results):
        sys.exit("FAILED: some output is not exactly the input")


if __name__ == "__main__":
    main()
