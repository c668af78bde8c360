"""Exactly-once windowed count beside passthrough: what event-time windows cost per record.

One input topic (N JSON values of about 100 bytes over K keys, key k in partition k % 4;
record i has timestamp base + i, so event time advances 1 ms per record) is filled once;
then eokafka workers run over it one after the other, each with its own consumer group and
fresh output topic:

- ``passthrough``: ``benchmarks.apps.passthrough:app``, bytes copied untouched;
- ``windowed-final``: ``benchmarks.apps.windowed_bench:final``, a count per key and tumbling
  window (10 s by default), emitting each window's count once when stream time passes it;
- ``windowed-update``: ``benchmarks.apps.windowed_bench:update``, the same count emitting the
  new count for every input.

Clocks as in count_by_key.py; "records/s" is always input records per second, until the
read_committed reader has seen every expected output. Afterwards the outputs are read again:
windowed-final must hold every closed window's exact count once (and nothing else), and
windowed-update must count 1, 2, ..., n in order per window.

    python -m benchmarks.windowed_count                  # 1,000,000 records, own broker
    python -m benchmarks.windowed_count --records 200000 --bootstrap 127.0.0.1:9092
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

from benchmarks.common import read_all
from benchmarks.count_by_key import (
    Runner,
    check_passthrough,
    key_name,
    parse_args,
    produce_input,
    run_contender,
    run_rounds,
)
from benchmarks.passthrough import Result

CONTENDERS = {
    "passthrough": "benchmarks.apps.passthrough:app",
    "windowed-final": "benchmarks.apps.windowed_bench:final",
    "windowed-update": "benchmarks.apps.windowed_bench:update",
}
HOUR_MS = 3_600_000
# Event time starts a day before the run, on a whole hour. A fixed date long past would put
# every record beyond the broker's time retention (7 days by default): its retention check
# (every 5 minutes) would then delete input and output segments in the middle of a run.
BASE_MS = (int(time.time() * 1000) - 24 * HOUR_MS) // HOUR_MS * HOUR_MS
Window = tuple[str, int]  # (key, window start)


def expected_windows(args: argparse.Namespace) -> tuple[Counter[Window], set[Window]]:
    """Count per (key, window) of the whole input, and the windows that close in it: those
    ending at or before their partition's last timestamp (grace 0)."""
    size, keys, parts = args.window_ms, args.keys, args.partitions
    counts: Counter[Window] = Counter()
    last = [0] * parts  # stream time at the end, per partition
    for i in range(args.records):
        ts = BASE_MS + i
        counts[(key_name(i % keys), ts - ts % size)] += 1
        last[i % keys % parts] = ts
    partition = {key_name(k): k % parts for k in range(keys)}
    closed = {(k, s) for k, s in counts if s + size <= last[partition[k]]}
    return counts, closed


def check_windows(
    bootstrap: str, out: str, parts: int, counts: Counter[Window], closed: set[Window], final: bool
) -> tuple[bool, str]:
    seen: dict[Window, list[int]] = {}
    for m in read_all(bootstrap, out, parts):
        key = m.key()
        window = (key[:-16].decode(), int.from_bytes(key[-16:-8], "big", signed=True))
        seen.setdefault(window, []).append(json.loads(m.value()))
    want = {w: counts[w] for w in closed} if final else dict(counts)
    wrong = sum(1 for w, n in want.items() if seen.get(w, [None])[-1] != n)
    unexpected = sum(1 for w in seen if w not in want)
    if final:
        bad = sum(1 for v in seen.values() if len(v) != 1)
        what = "emitted more than once"
    else:
        bad = sum(1 for v in seen.values() if v != list(range(1, len(v) + 1)))
        what = "out of sequence"
    text = (
        f"{sum(map(len, seen.values()))} records, {len(seen)} windows (want {len(want)}), "
        f"{wrong} wrong or missing counts, {bad} {what}, {unexpected} unexpected"
    )
    return wrong == 0 and unexpected == 0 and bad == 0, text


def main() -> None:
    def more(p: argparse.ArgumentParser) -> None:
        p.add_argument("--window-ms", type=int, default=10_000, help="tumbling window size")

    args, names = parse_args(
        __doc__, CONTENDERS, 1_000, more, chart=Path("docs/benchmarks/windowed_count.png")
    )
    os.environ["BENCH_WINDOW_MS"] = str(args.window_ms)  # the workers inherit it

    def fill(bootstrap: str, src: str) -> Runner:
        expected = produce_input(
            bootstrap, src, args.records, args.keys, event_time=(BASE_MS, args.partitions)
        )
        counts, closed = expected_windows(args)
        print(f"input: {len(counts):,} windows, {len(closed):,} of them close", flush=True)

        def run(name: str, b: str, s: str, work: Path, topics: list[str]) -> Result:
            final = name == "windowed-final"

            def check(out: str) -> tuple[bool, str]:
                if name == "passthrough":
                    return check_passthrough(b, out, args.records, args.partitions)
                return check_windows(b, out, args.partitions, counts, closed, final)

            return run_contender(
                name,
                b,
                s,
                expected,
                work,
                args,
                topics,
                target=CONTENDERS[name],
                outputs=len(closed) if final else None,
                check=check,
            )

        return run

    title = f"Exactly-once windowed count ({args.window_ms:,} ms tumbling) vs passthrough"
    run_rounds(args, names, "bench-win", fill, title)


if __name__ == "__main__":
    main()
