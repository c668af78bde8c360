"""Exactly-once count by key beside passthrough: what a state store costs per record.

One input topic (N JSON values of about 100 bytes over K distinct keys, 4 partitions) is
filled once; then the contenders run over it one after the other, each with its own
consumer group and fresh output topic:

- ``passthrough``: ``benchmarks.apps.passthrough:app``, every JSON value parsed and written
  back (``--values bytes``: copied untouched);
- ``count``: ``benchmarks.apps.count_bench:app``, a store ``counts`` (memory by default,
  ``--backend``) that counts per record key, emitting the new count for every input and
  writing the changed counts to its changelog in each transaction; values are parsed as
  JSON (``--values bytes``: not parsed);
- ``kstreams-passthrough`` and ``kstreams-count``: the same two jobs in Kafka Streams
  (``benchmarks/kstreams``, EOS v2, RocksDB store, record cache off);
- ``hand-count`` and ``hand-json-count``: the hand-written confluent-kafka loop
  (``benchmarks/hand_loop.py --mode count``) counting in a dict and writing the changed counts
  to a changelog topic in each transaction; ``hand-json-count`` also parses every value and
  writes the counts with orjson, the JSON work the ``count`` app does (the floor for it);
- ``quix-count``: the same count in Quix Streams (``benchmarks/quix_count.py``, exactly-once,
  its in-memory store with ``--backend memory``, else RocksDB; a changelog topic Quix creates).

Clocks as in passthrough.py: records/s from process start until a read_committed reader has
seen all N outputs; "steady" from the first committed output; "start CPU s" is the CPU a
contender spent before its first committed output. Afterwards the outputs are read
again: passthrough must hold every input id exactly once, and count must emit, per key,
exactly 1, 2, ..., n in order, so its last count equals the number of inputs with that key.

    python -m benchmarks.count_by_key                    # 1,000,000 records, own broker
    python -m benchmarks.count_by_key --records 100000 --bootstrap 127.0.0.1:39092
    python -m benchmarks.count_by_key --backend rocksdb --rounds 3
    python -m benchmarks.count_by_key --contenders count,kstreams-count --backend rocksdb
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import kstreams
from benchmarks.chart import add_options, captured, load_average, publish, require_matplotlib
from benchmarks.common import (
    DEFAULT_PORT,
    BulkWriter,
    CommittedReader,
    WorkerProcess,
    add_baseline_option,
    add_profile_option,
    admin,
    broker,
    child_env,
    create_topics,
    delete_topics,
    exactly_once_report,
    exit_on_sigterm,
    from_tree,
    in_tree,
    keep_logs_if_failed,
    python_cmd,
    read_all,
    unique,
    watch,
    with_baselines,
)
from benchmarks.passthrough import (
    Result,
    _flags,
    _fmt,
    by_contender,
    hand_cmd,
    print_summary,
    warm_up,
)

CONTENDERS = {
    "passthrough": "benchmarks.apps.passthrough:app",
    "count": "benchmarks.apps.count_bench:app",
    "kstreams-passthrough": "kstreams passthrough",
    "kstreams-count": "kstreams count",
    "hand-count": "hand loop count bytes",
    "hand-json-count": "hand loop count json",
    "quix-count": "quix count",
}
HAND_VALUES = {"hand-count": "bytes", "hand-json-count": "json"}
QUIX = ("quix-count",)
KSTREAMS_MODES = {"kstreams-passthrough": "passthrough", "kstreams-count": "count"}
BACKENDS = ("memory", "sqlite", "rocksdb")
VALUE_BYTES = 100


def key_name(i: int) -> str:
    return f"user-{i:05d}"


def json_value(i: int, key: str) -> bytes:
    """A ~100-byte JSON object; the id lets the passthrough check find every input once."""
    head = f'{{"id":{i},"user":"{key}","amount":{i % 100_000 / 100},"note":"'
    return (head + "x" * max(0, VALUE_BYTES - len(head) - 2) + '"}').encode()


def produce_input(
    bootstrap: str,
    topic: str,
    n: int,
    keys: int,
    event_time: tuple[int, int] | None = None,
    ms_per_record: int = 1,
) -> dict[str, int]:
    """Fill the input once (partition = hash of the key); return the inputs per key.

    With ``event_time=(base, partitions)`` record i gets timestamp ``base + i *
    ms_per_record`` and key k goes to partition ``k % partitions``.
    """
    writer = BulkWriter(bootstrap)
    names = [key_name(k) for k in range(keys)]
    started = time.monotonic()
    placed: dict[str, int] = {}
    for i in range(n):
        key = names[i % keys]
        if event_time is not None:
            placed = {
                "timestamp": event_time[0] + i * ms_per_record,
                "partition": i % keys % event_time[1],
            }
        writer.send(topic, json_value(i, key), key.encode(), **placed)
    writer.finish("input")
    print(
        f"input: {n:,} records of {VALUE_BYTES} B JSON over {min(n, keys):,} keys written in "
        f"{time.monotonic() - started:.1f} s",
        flush=True,
    )
    return {names[k]: n // keys + (k < n % keys) for k in range(min(n, keys))}


def check_passthrough(bootstrap: str, out: str, n: int, partitions: int) -> tuple[bool, str]:
    """Every input id exactly once (the id is in the untouched JSON value)."""
    counts: dict[int, int] = {}
    for m in read_all(bootstrap, out, partitions):
        i = json.loads(m.value())["id"]
        counts[i] = counts.get(i, 0) + 1
    return exactly_once_report(counts, range(n))


def check_counts(
    bootstrap: str, out: str, expected: dict[str, int], partitions: int
) -> tuple[bool, str]:
    """Per key the emitted counts must be exactly 1..n in order, n = inputs with that key."""
    last: dict[str, int] = {}
    total = out_of_sequence = 0
    for m in read_all(bootstrap, out, partitions):
        total += 1
        key, count = m.key().decode(), int(m.value())
        if count != last.get(key, 0) + 1:
            out_of_sequence += 1
        last[key] = count
    wrong = sum(1 for k, n in expected.items() if last.get(k) != n)
    unexpected = sum(1 for k in last if k not in expected)
    ok = wrong == 0 and unexpected == 0 and out_of_sequence == 0
    want = sum(expected.values())
    text = (
        f"{total} records (want {want}), {len(last)} keys, {wrong} wrong final counts, "
        f"{out_of_sequence} out of sequence, {unexpected} unexpected keys"
    )
    return ok and total == want, text


def run_contender(
    name: str,
    bootstrap: str,
    src: str,
    expected: dict[str, int],
    work: Path,
    args: argparse.Namespace,
    topics: list[str],
    *,
    target: str | None = None,
    outputs: int | None = None,
    check: Callable[[str], tuple[bool, str]] | None = None,
    inputs: int | None = None,
    settings: dict[str, str] | None = None,
) -> Result:
    """Run one contender to the end of its output and check it.

    Other benchmarks reuse this: ``target`` is the app (default ``CONTENDERS[name]``;
    ``"kstreams <mode>"`` runs the Kafka Streams app in that mode), ``outputs`` the number of
    output records to wait for (default: one per input), ``check(output topic)`` the verdict
    (default: by name, count or passthrough), ``inputs`` the number of input records the
    rates count (default ``--records``), and ``settings`` more of the run's parameters:
    ``{"other": "t"}`` is ``BENCH_OTHER=t`` for an eokafka app, ``--other t`` for Kafka Streams.
    """
    n, parts = inputs or args.records, args.partitions
    want = outputs or n
    group = unique(f"bench-cbk-{name}")
    base, tree = from_tree(name, args.baseline)
    target = target or CONTENDERS[base]
    more = settings or {}
    out = f"{group}-out"
    topics.append(out)
    create_topics(bootstrap, [out], parts)
    # Settings a user might have exported must not leak into the measured worker.
    env = {k: v for k, v in child_env().items() if not k.startswith("EOKAFKA_")}
    env.update(
        BENCH_APP_ID=group,
        BENCH_INPUT=src,
        BENCH_OUTPUT=out,
        BENCH_BACKEND=args.backend,
        BENCH_VALUES=args.values,
        EOKAFKA_BATCH_SIZE=str(args.batch_size),
        EOKAFKA_COMMIT_EVERY=str(args.commit_every),
    )
    env.update({f"BENCH_{k.upper().replace('-', '_')}": v for k, v in more.items()})
    if base in HAND_VALUES:
        changelog = f"{group}-counts-changelog"  # deleted below with the worker's own topics
        create_topics(bootstrap, [changelog], parts)
        cmd = hand_cmd(
            bootstrap, src, out, group, args,
            values=HAND_VALUES[base], mode="count", changelog=changelog,
        )  # fmt: skip
    elif target == "quix count":
        cmd = python_cmd(
            "-m",
            "benchmarks.quix_count",
            *_flags(
                bootstrap=bootstrap,
                input=src,
                output=out,
                group=group,
                state_dir=str(work / f"state-{group}"),
                commit_interval_ms=str(args.commit_interval_ms),
                commit_every=str(args.commit_every),
                values=args.values,
                store="memory" if args.backend == "memory" else "rocksdb",
            ),
        )
    elif target.startswith("kstreams "):
        cmd = kstreams.command(
            mode=target.split()[1],
            values=args.values,
            bootstrap=bootstrap,
            input=src,
            output=out,
            application_id=group,
            state_dir=work / f"state-{group}",
            commit_interval_ms=args.commit_interval_ms,
            batch_size=args.batch_size,
            more=more,
        )
    else:
        cmd = python_cmd(
            "-m",
            "eokafka",
            "run",
            target,
            *_flags(
                bootstrap_servers=bootstrap,
                state_dir=str(work / f"state-{group}"),
                instance_id="bench-0",
                commit_interval_ms=str(args.commit_interval_ms),
            ),
        )
    reader = CommittedReader(bootstrap, out, parts, target=want)
    reader.start()
    print(f"{name}: running (log {work / (group + '.log')}) ...", flush=True)
    proc = WorkerProcess(group, cmd, in_tree(env, tree), work, tree)
    cpu = rss = steady_cpu_us = None
    cpu_mark: tuple[float, int] | None = None
    try:
        profile = None if args.profile is None else args.profile / f"{name}.folded"
        rss, cpu, cpu_mark = watch(name, proc, reader, want, args.timeout, profile)
        if cpu is not None and cpu_mark is not None and reader.count > cpu_mark[1]:
            inputs = (reader.count - cpu_mark[1]) * n / want  # inputs behind those outputs
            steady_cpu_us = (cpu - cpu_mark[0]) / inputs * 1e6
    finally:
        code = proc.stop()
        reader.stop()
        # The worker's own topics (changelog; Quix's are "changelog__<group>--...") go too
        # when the broker is reused.
        topics.extend(t for t in admin(bootstrap).list_topics(timeout=30).topics if
                      group in t and t != out)  # fmt: skip
    assert reader.first_at is not None and reader.done_at is not None
    if check is not None:
        ok, verdict = check(out)
    elif base in ("count", "kstreams-count", "quix-count", *HAND_VALUES):
        ok, verdict = check_counts(bootstrap, out, expected, parts)
    else:
        ok, verdict = check_passthrough(bootstrap, out, n, parts)
    result = Result(
        name=name,
        records=n,
        total_s=reader.done_at - proc.started_at,
        first_output_s=reader.first_at - proc.started_at,
        # In inputs: with fewer outputs than inputs, the inputs behind the first output.
        steady_records=n - reader.first_count * n // want,
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


def full_title(args: argparse.Namespace, title: str = "") -> str:
    values = "JSON values parsed" if args.values == "json" else "bytes values"
    return (
        f"{title or 'Exactly-once count by key vs passthrough'}, "
        f"{args.records:,} records x {VALUE_BYTES} B ({values}) "
        f"over {min(args.records, args.keys):,} keys and {args.partitions} partitions; store "
        f"backend {args.backend} (Kafka Streams: RocksDB); commit every "
        f"{args.commit_interval_ms} ms or {args.commit_every:,} records; batch {args.batch_size}"
    )


HOW = (
    "Each contender is one process, run one after another on the same input into its own "
    "output topic. records/s = N inputs / seconds from process start until a read_committed "
    "reader has seen all expected outputs; steady = from the first committed output to the "
    "last; CPU us/record = the worker's user+system time (/proc) per input after its first "
    "output; peak RSS = its VmHWM. Each output was re-read read_committed and checked "
    "exactly (every input id once, or per key and window the counts 1..n in order; the "
    "table has the verdicts). The broker (one node) runs on the same machine."
)

# Ratios printed under the table, when both sides ran: (numerator, denominator).
RATIOS = (
    ("kstreams-count", "kstreams-passthrough"),
    ("passthrough", "kstreams-passthrough"),
    ("count", "kstreams-count"),
    ("count", "hand-json-count"),
    ("count", "hand-count"),
    ("count", "quix-count"),
)


def print_table(
    results: list[Result],
    args: argparse.Namespace,
    title: str = "",
    ratios: list[tuple[str, str]] | None = None,
) -> None:
    print()
    print(full_title(args, title))
    width = max([11, *(len(r.name) for r in results)])
    head = (
        f"{'contender':<{width}} {'records/s':>10} {'seconds':>8} {'steady rec/s':>12} "
        f"{'steady s':>8} {'1st out s':>9} {'CPU s':>6} {'start CPU s':>11} {'CPU us/rec':>10} "
        f"{'peak RSS MB':>11}  output check (read_committed re-read)"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r.name:<{width}} {r.total_rate:>10,.0f} {r.total_s:>8.2f} {r.steady_rate:>12,.0f} "
            f"{r.steady_s:>8.2f} {r.first_output_s:>9.2f} {_fmt(r.cpu_s, '.1f'):>6} "
            f"{_fmt(r.startup_cpu_s, '.2f'):>11} {_fmt(r.steady_cpu_us, '.1f'):>10} "
            f"{_fmt(r.peak_rss_mb, '.1f'):>11}  "
            f"{'ok' if r.exactly_once else 'FAILED'}: {r.verdict}"
        )
    runs = by_contender(results)
    if ratios is None:
        own = sorted(
            n
            for n in runs
            if n != "passthrough"
            and n not in KSTREAMS_MODES
            and n not in HAND_VALUES
            and n not in QUIX
        )
        ratios = [*((n, "passthrough") for n in own), *RATIOS]
    print_summary(runs, ratios)
    print(
        "records/s = input records / seconds from process start until a read_committed "
        "reader has seen all expected outputs; steady = the inputs behind the outputs after "
        "the first committed one / seconds from the first to the last; CPU s = the worker's "
        "user+system time at the end; start CPU s = its CPU time at the first committed "
        "output; CPU us/rec = its CPU per input after the first output; peak RSS = its VmHWM."
    )


def parse_args(
    doc: str,
    contenders: dict[str, str],
    keys: int,
    more: Callable[[argparse.ArgumentParser], None],
    chart: Path = Path("docs/benchmarks/count_by_key.png"),
) -> tuple[argparse.Namespace, list[str]]:
    """The options of this benchmark (and of others built on it, which add ``more``)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--keys", type=int, default=keys)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--backend", choices=BACKENDS, default="memory", help="the count store's")
    p.add_argument(
        "--contenders",
        default=",".join(contenders),
        help=f"comma-separated, run in this order (of {', '.join(contenders)})",
    )
    p.add_argument(
        "--rounds", type=int, default=1, help="run the contenders this many times, interleaved"
    )
    p.add_argument("--bootstrap", help="use this broker instead of starting a dev broker")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="dev broker port (and +1)")
    p.add_argument("--commit-interval-ms", type=int, default=100)
    p.add_argument("--commit-every", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=1_000)
    p.add_argument("--timeout", type=float, default=900, help="seconds per contender")
    add_profile_option(p)
    add_baseline_option(p)
    add_options(p, chart)
    more(p)
    args = p.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    names = [c.strip() for c in args.contenders.split(",") if c.strip()]
    if not names or any(c not in contenders for c in names):
        p.error(f"--contenders: choose from {', '.join(contenders)}")
    if args.records < 1 or args.keys < 1:
        p.error("--records and --keys must be positive")
    return args, with_baselines(
        names,
        args.baseline,
        lambda n: not n.startswith("kstreams") and n not in HAND_VALUES and n not in QUIX,
    )


Runner = Callable[[str, str, str, Path, list[str]], Result]  # name, bootstrap, src, work, topics


def run_rounds(
    args: argparse.Namespace,
    names: list[str],
    prefix: str,
    fill: Callable[[str, str], Runner],
    title: str = "",
    inputs: tuple[str, ...] = (),
    ratios: list[tuple[str, str]] | None = None,
) -> None:
    """Broker, input topic (``fill(bootstrap, src)`` writes it and returns how to run one
    contender), the contenders round by round, the table, and a non-zero exit on failure.

    ``inputs``: suffixes of further input topics, ``<src>-<suffix>``, created beside ``src``
    (with as many partitions) for ``fill`` to write; ``ratios``: the ratio lines (default:
    count by key's).
    """
    exit_on_sigterm()
    os.chdir(Path(__file__).resolve().parent.parent)
    if not args.no_chart:
        require_matplotlib()
    if any(n.startswith("kstreams") for n in names):
        kstreams.ensure_built()  # before any clock runs
    load_at_start = load_average()
    results: list[Result] = []
    with (
        broker(args.bootstrap, args.port) as bootstrap,
        tempfile.TemporaryDirectory(prefix="eokafka-bench-") as tmp,
    ):
        work = Path(tmp)
        src = unique(f"{prefix}-in")
        warm = unique(f"{prefix}-warm-up")
        more = [f"{src}-{suffix}" for suffix in inputs]
        topics: list[str] = [src, *more, warm]
        try:
            create_topics(bootstrap, [src, *more], args.partitions)
            create_topics(bootstrap, [warm], 1)
            warm_up(bootstrap, warm)
            run_one = fill(bootstrap, src)
            for name in [n for _ in range(args.rounds) for n in names]:
                results.append(run_one(name, bootstrap, src, work, topics))
            keep_logs_if_failed(work, all(r.exactly_once for r in results))
        finally:
            if args.bootstrap:
                delete_topics(bootstrap, topics)
    with captured() as table:
        print_table(results, args, title, ratios)
    chart = None if args.no_chart else args.chart
    heading = full_title(args, title)
    publish(table.getvalue(), chart, heading, results, HOW, load_at_start, args.note)
    if not all(r.exactly_once for r in results):
        sys.exit("FAILED: some output is not what exactly-once processing must give")


def main() -> None:
    args, names = parse_args(__doc__, CONTENDERS, 10_000, lambda p: None)

    def fill(bootstrap: str, src: str) -> Runner:
        expected = produce_input(bootstrap, src, args.records, args.keys)
        return lambda name, b, s, work, topics: run_contender(
            name, b, s, expected, work, args, topics
        )

    run_rounds(args, names, "bench-cbk", fill)


if __name__ == "__main__":
    main()
