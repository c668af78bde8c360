"""Exactly-once joins beside count by key, in eokafka and in Kafka Streams, in one run.

Three workloads, each run by eokafka and by Kafka Streams (``benchmarks/kstreams``, EOS v2,
RocksDB stores, record cache off), interleaved, each contender its own process with its own
consumer group and fresh output topic:

- ``count`` / ``kstreams-count``: count by key (``benchmarks.apps.count_bench:app``), the
  reference, over the stream: N JSON values of about 100 bytes over K keys, key k in
  partition k % P, record i at time base + 2i;
- ``join`` / ``kstreams-join``: a windowed inner stream-stream join
  (``benchmarks.apps.join_bench:streams``; ``JoinWindows.ofTimeDifferenceAndGrace``) of N
  orders (key ``order-<i>``, time base + 2i, partition i % P) with N payments (the same keys
  and partitions, 1 s later): every order meets its payment, N results;
- ``asof`` / ``kstreams-asof``: the stream joined as of each record's time with a versioned
  table (``benchmarks.apps.join_bench:asof``; ``Stores.persistentVersionedKeyValueStore``)
  holding K keys x V versions (spread over the stream's time, at odd times, so no version
  ties with a record) and one last version past the stream's end: N results.

Rates count input records: N for count, 2N for join, N + K(V + 1) for asof. Afterwards every
output is read again read_committed: count must emit 1..n per key in order; join every order
id once, with its own payment; asof every record once, with the version valid at its time
(computed here from the input). Any failed check exits non-zero.

    python -m benchmarks.joins                           # 1,000,000 records, own broker
    python -m benchmarks.joins --records 20000 --bootstrap 127.0.0.1:39092 --no-chart
    python -m benchmarks.joins --rounds 3 --backend rocksdb
"""

from __future__ import annotations

import argparse
import bisect
import json
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import BulkWriter, exactly_once_report, read_all
from benchmarks.count_by_key import (
    Runner,
    json_value,
    key_name,
    parse_args,
    produce_input,
    run_contender,
    run_rounds,
)
from benchmarks.passthrough import Result
from benchmarks.windowed_count import BASE_MS

CONTENDERS = {
    "count": "benchmarks.apps.count_bench:app",
    "kstreams-count": "kstreams count",
    "join": "benchmarks.apps.join_bench:streams",
    "kstreams-join": "kstreams join",
    "asof": "benchmarks.apps.join_bench:asof",
    "kstreams-asof": "kstreams asof",
}
RATIOS = [
    ("join", "count"),
    ("asof", "count"),
    ("kstreams-join", "kstreams-count"),
    ("kstreams-asof", "kstreams-count"),
    ("count", "kstreams-count"),
    ("join", "kstreams-join"),
    ("asof", "kstreams-asof"),
]
MS_PER_RECORD = 2  # the stream's and the orders' records at even times, versions at odd ones
PAYMENT_LAG_MS = 1_000
Check = Callable[[str], tuple[bool, str]]


def order_key(i: int) -> str:
    return f"order-{i:07d}"


def produce_orders(bootstrap: str, orders: str, payments: str, n: int, parts: int) -> None:
    """Order i and its payment: key ``order-<i>``, partition i % parts, times 1 s apart."""
    writer = BulkWriter(bootstrap)
    started = time.monotonic()
    for i in range(n):
        key = order_key(i)
        ts = BASE_MS + i * MS_PER_RECORD
        writer.send(orders, json_value(i, key), key.encode(), timestamp=ts, partition=i % parts)
        writer.send(payments, json_value(i, key), key.encode(), timestamp=ts + PAYMENT_LAG_MS,
                    partition=i % parts)  # fmt: skip
    writer.finish("orders and payments")
    print(f"input: {n:,} orders and {n:,} payments written in "
          f"{time.monotonic() - started:.1f} s", flush=True)  # fmt: skip


def version_times(n: int, versions: int) -> list[int]:
    """When each version of every key becomes valid: odd times over the stream's span, the
    first before its first record, and one more after its last."""
    step = MS_PER_RECORD * max(1, n // versions)
    return [BASE_MS - 1 + j * step for j in range(versions)] + [BASE_MS + MS_PER_RECORD * n + 1]


def produce_table(bootstrap: str, topic: str, keys: int, times: list[int], parts: int) -> int:
    """Every key's versions in time order (key k in partition k % parts, as the stream)."""
    writer = BulkWriter(bootstrap)
    for j, ts in enumerate(times):
        for k in range(keys):
            head = f'{{"version":{j},"price":{(k + j) % 1000 / 10},"note":"'
            value = head + "x" * max(0, 100 - len(head) - 2) + '"}'
            writer.send(topic, value.encode(), key_name(k).encode(), timestamp=ts,
                        partition=k % parts)  # fmt: skip
    writer.finish("table")
    print(f"input: table of {keys:,} keys x {len(times)} versions written", flush=True)
    return keys * len(times)


def check_joined(
    bootstrap: str, out: str, n: int, parts: int, expect: Callable[[int], object], field: str
) -> tuple[bool, str]:
    """Every record id once, each with ``value[field] == expect(id)``."""
    counts: dict[int, int] = {}
    wrong = 0
    for m in read_all(bootstrap, out, parts):
        value = json.loads(m.value())
        i = value["id"]
        counts[i] = counts.get(i, 0) + 1
        wrong += value.get(field) != expect(i) or m.key().decode() != value["user"]
    ok, text = exactly_once_report(counts, range(n))
    return ok and wrong == 0, f"{text}, {wrong} joined wrongly"


def main() -> None:
    def more(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--join-window-ms",
            type=int,
            default=5_000,
            help="how far apart an order and its payment may be, either way",
        )
        p.add_argument(
            "--grace-ms",
            type=int,
            default=60_000,
            help="of the stream-stream join (both contenders read the backlog in timestamp "
            "order across the two topics)",
        )
        p.add_argument("--versions", type=int, default=10, help="per key in the table")

    args, names = parse_args(__doc__, CONTENDERS, 10_000, more, Path("docs/benchmarks/joins.png"))
    if args.values != "json":
        raise SystemExit("--values: the joins read fields of their values, so only json")
    n, parts, keys = args.records, args.partitions, min(args.records, args.keys)
    times = version_times(n, args.versions)
    history_ms = times[-1] - times[0] + 60_000  # every version of the run stays

    def fill(bootstrap: str, src: str) -> Runner:
        expected = produce_input(bootstrap, src, n, keys, (BASE_MS, parts), MS_PER_RECORD)
        produce_orders(bootstrap, f"{src}-orders", f"{src}-payments", n, parts)
        table = produce_table(bootstrap, f"{src}-prices", keys, times, parts)

        def version(i: int) -> int:
            return bisect.bisect_right(times, BASE_MS + i * MS_PER_RECORD) - 1

        def run(name: str, b: str, s: str, work: Path, topics: list[str]) -> Result:
            workload = name.removeprefix("kstreams-")
            source, inputs, settings = s, n, dict[str, str]()
            check: Check | None = None  # count: run_contender's own check
            if workload == "join":
                source, inputs = f"{s}-orders", 2 * n
                settings = {"other": f"{s}-payments", "join-window-ms": str(args.join_window_ms),
                            "grace-ms": str(args.grace_ms)}  # fmt: skip

                def check(out: str) -> tuple[bool, str]:
                    return check_joined(b, out, n, parts, lambda i: i, "payment")

            elif workload == "asof":
                inputs = n + table
                settings = {"other": f"{s}-prices", "history-ms": str(history_ms)}
                if workload == name:  # eokafka waits in event time; Kafka Streams reads in
                    settings["max-wait-ms"] = str(history_ms)  # time order instead

                def check(out: str) -> tuple[bool, str]:
                    return check_joined(b, out, n, parts, version, "version")

            return run_contender(name, b, source, expected, work, args, topics,
                                 target=CONTENDERS[name], check=check, outputs=n, inputs=inputs,
                                 settings=settings)  # fmt: skip

        return run

    title = (
        f"Exactly-once joins vs count by key: stream-stream join of {n:,} orders with {n:,} "
        f"payments ({args.join_window_ms:,} ms window, {args.grace_ms:,} ms grace), as-of join "
        f"of the stream with a versioned table of {keys:,} keys x {len(times)} versions"
    )
    inputs = ("orders", "payments", "prices")
    run_rounds(args, names, "bench-join", fill, title, inputs, RATIOS)


if __name__ == "__main__":
    main()
