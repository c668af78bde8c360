"""What compiling the worker's hot per-record modules to native code would gain.

A prototype, not how eokafka ships: it copies this tree's ``eokafka`` and ``benchmarks``
into a temporary folder, compiles the modules of the per-record path there with Cython in
pure-Python mode (the ``.py`` files as they are; ``annotation_typing=False``, so the type
hints stay hints and every module behaves as in CPython), and runs ``benchmarks/loop.py``
from both trees in interleaved rounds. A third contender, ``hand``, is the floor: a
hand-written transactional loop over the same in-memory clients doing the same JSON work
(passthrough: orjson decode and encode per record; count: decode, a dict count, the count
written out, one changelog record per key and commit). All three run as child processes,
one after another, and report process CPU time per record, so the in-memory clients' own
Python cost (the same for all three) is in every figure and cancels in the differences.

    python -m benchmarks.native_prototype --records 100000 --rounds 5
    python -m benchmarks.native_prototype --tree /tmp/native --keep   # reuse a build
    python -m benchmarks.native_prototype --pool run1.txt run2.txt     # rounds of saved runs

Cython is not a dependency of eokafka: ``pip install Cython`` (and a C compiler).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.loop import APPS, REPO_ROOT, filled_cluster
from benchmarks.loop import _measure as measure_loop

# The modules a record passes through between consume() and produce(), from py-spy.
HOT = [
    "eokafka/runtime/process/worker.py",  # the loop: step()
    "eokafka/runtime/tasks/manager.py",  # a batch cut into the tasks' runs
    "eokafka/runtime/tasks/process.py",  # decode, call the processor, collect
    "eokafka/runtime/commit/collector.py",  # emit: produce()
    "eokafka/context.py",  # ctx.send, ctx.store
    "eokafka/record.py",
    "eokafka/serdes/core.py",  # Json / String around orjson
    "eokafka/state/store.py",  # store get / put
]


def build(dest: Path) -> None:
    """This tree's code in ``dest``, the HOT modules compiled in place next to their .py
    (an extension module wins over source in the import system's search order)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.c")
    for pkg in ("eokafka", "benchmarks"):
        shutil.copytree(REPO_ROOT / pkg, dest / pkg, ignore=ignore, dirs_exist_ok=True)
    cmd = ["cythonize", "-i", "-3", "-j", "2", "-X", "annotation_typing=False", *HOT]
    subprocess.run(cmd, cwd=dest, check=True, capture_output=True, text=True)
    check = "import importlib as i,sys;[print(i.import_module(m).__file__) for m in sys.argv[1:]]"
    mods = [m.removesuffix(".py").replace("/", ".") for m in HOT]
    out = subprocess.run([sys.executable, "-c", check, *mods], cwd=dest, check=True,
                         env={**os.environ, "PYTHONPATH": str(dest)}, capture_output=True,
                         text=True).stdout.split()  # fmt: skip
    not_native = [f for f in out if not f.endswith(".so")]
    if not_native:
        raise SystemExit(f"native_prototype: not compiled: {not_native}")


def hand_run(app_name: str, records: int, keys: int, commit_every: int) -> float:
    """CPU µs per record of the hand-written loop over the in-memory clients."""
    import orjson
    from confluent_kafka import TopicPartition

    from eokafka.testing.clients import MemoryConsumer, MemoryProducer
    from eokafka.testing.cluster import MemoryCluster

    cluster = filled_cluster(MemoryCluster(4), records, keys)
    cluster.create_topic("out", 4)
    cluster.create_topic("changelog", 4)
    group = "hand"
    consumer = MemoryConsumer(cluster, {"group.id": group, "auto.offset.reset": "earliest",
                                        "isolation.level": "read_committed"})  # fmt: skip
    producer = MemoryProducer(cluster, {"transactional.id": group,
                                        "delivery.report.only.error": True})  # fmt: skip
    producer.init_transactions()
    consumer.subscribe(["in"])
    produce = producer.produce
    loads, dumps = orjson.loads, orjson.dumps
    count = app_name == "count"
    counts: dict[str, int] = {}
    dirty: list[dict[bytes, bytes]] = [{} for _ in range(4)]
    started = time.process_time()
    done = in_txn = 0
    while done < records:
        msgs = consumer.consume(1000, 0)
        if not in_txn:
            producer.begin_transaction()
            in_txn = 1
        for msg in msgs:
            if msg.error() is not None:
                continue
            ts = msg.timestamp()[1]
            value = loads(msg.value())
            if count:
                kb = msg.key()
                key = kb.decode()
                n = counts.get(key, 0) + 1
                counts[key] = n
                out = b"%d" % n
                dirty[msg.partition()][kb] = out
                produce("out", out, kb, -1, None, None, ts if ts > 0 else 0)
            else:
                produce("out", dumps(value), msg.key(), -1, None, None, ts if ts > 0 else 0)
            done += 1
        if done % commit_every < len(msgs) or done >= records:
            for p, writes in enumerate(dirty):
                for k, v in writes.items():
                    produce("changelog", v, k, p)
                writes.clear()
            positions = consumer.position(consumer.assignment())
            offsets = [TopicPartition(tp.topic, tp.partition, tp.offset) for tp in positions]
            producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata())
            producer.commit_transaction()
            in_txn = 0
    took = time.process_time() - started
    if len(cluster.records("out", include_open=False)) != records:
        raise SystemExit("native_prototype: the hand loop lost records")
    return took / records * 1e6


def _hand(app: str, args: argparse.Namespace) -> float:
    cmd = [sys.executable, "-m", "benchmarks.native_prototype", "--hand", app,
           "--records", str(args.records), "--keys", str(args.keys),
           "--commit-every", str(args.commit_every)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(cmd, cwd=REPO_ROOT, env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def _spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):6.2f} ({min(xs):.2f}-{max(xs):.2f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--commit-every", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--apps", default=",".join(APPS), help=f"of {', '.join(APPS)}")
    p.add_argument("--tree", type=Path, help="build into (or reuse a build in) this folder")
    p.add_argument("--keep", action="store_true", help="keep the built tree")
    p.add_argument("--pool", type=Path, nargs="+", metavar="OUTPUT",
                   help="summarise the rounds printed by earlier runs, saved to files")  # fmt: skip
    p.add_argument("--hand", choices=APPS, help=argparse.SUPPRESS)  # a child: one hand run
    args = p.parse_args()
    if args.pool:
        pool(args.pool)
        return
    if args.hand:
        print(f"{hand_run(args.hand, args.records, args.keys, args.commit_every):.3f}")
        return
    tree = (args.tree or Path(tempfile.mkdtemp(prefix="eokafka-native-"))).resolve()
    try:
        if not list(tree.glob("eokafka/runtime/tasks/process*.so")):
            started = time.monotonic()
            build(tree)
            print(f"built {len(HOT)} modules in {tree} in {time.monotonic() - started:.0f} s")
        _rounds(args, tree)
    finally:
        if not args.keep:
            shutil.rmtree(tree, ignore_errors=True)


def _rounds(args: argparse.Namespace, tree: Path) -> None:
    apps = [a.strip() for a in args.apps.split(",") if a.strip()]
    runs = {"python": lambda app: measure_loop(REPO_ROOT, app, args),
            "native": lambda app: measure_loop(tree, app, args),
            "hand": lambda app: _hand(app, args)}  # fmt: skip
    figures: dict[tuple[str, str], list[float]] = {}
    for rnd in range(1, args.rounds + 1):
        for app in apps:
            for label, run in runs.items():
                us = run(app)
                figures.setdefault((app, label), []).append(us)
                print(f"round {rnd} {app:<12} {label:<7} {us:7.2f} us/record", flush=True)
    print("\nCPU us/record, median (range over rounds); added = above the hand loop")
    summary = {}
    for app in apps:
        py, nat, hand = (figures[(app, k)] for k in ("python", "native", "hand"))
        added_py = [a - h for a, h in zip(py, hand, strict=True)]
        added_nat = [a - h for a, h in zip(nat, hand, strict=True)]
        saved = [(a - b) / (a - h) for a, b, h in zip(py, nat, hand, strict=True)]
        ratio = [b / a for a, b in zip(py, nat, strict=True)]
        print(f"{app:<12} python {_spread(py)}  native {_spread(nat)}  hand {_spread(hand)}")
        print(f"{'':<12} added: python {_spread(added_py)}  native {_spread(added_nat)}")
        print(f"{'':<12} native/python {_spread(ratio)}  share of the added CPU saved "
              f"{_spread(saved)}")  # fmt: skip
        summary[app] = {
            "python_us": statistics.median(py),
            "native_us": statistics.median(nat),
            "hand_us": statistics.median(hand),
            "native_over_python": [min(ratio), statistics.median(ratio), max(ratio)],
            "added_saved": [min(saved), statistics.median(saved), max(saved)],
        }
    print(json.dumps({"records": args.records, "rounds": args.rounds, "modules": HOT,
                      "apps": summary}))  # fmt: skip


def pool(outputs: list[Path]) -> None:
    """Per round native/python, python - native and python - hand, pooled over the rounds
    of several runs: medians with a 95 % bootstrap interval of the median."""
    rounds: dict[tuple[int, int, str], dict[str, float]] = {}
    line = re.compile(r"round (\d+) (\w+)\s+(\w+)\s+([\d.]+) us/record")
    for i, path in enumerate(outputs):
        for m in line.finditer(path.read_text()):
            rounds.setdefault((i, int(m[1]), m[2]), {})[m[3]] = float(m[4])
    rng = random.Random(1)

    def median_ci(xs: list[float]) -> str:
        meds = sorted(statistics.median(rng.choices(xs, k=len(xs))) for _ in range(2000))
        return f"{statistics.median(xs):.3f} ({meds[50]:.3f} to {meds[1949]:.3f})"

    for app in APPS:
        rs = [r for (_, _, a), r in rounds.items() if a == app and len(r) == 3]
        if not rs:
            continue
        ratio = [r["native"] / r["python"] for r in rs]
        cheaper = sum(x < 1 for x in ratio)
        print(f"{app}: {len(rs)} rounds; native/python {median_ci(ratio)}, native cheaper in "
              f"{cheaper}; saved us/record {median_ci([r['python'] - r['native'] for r in rs])}; "
              f"added above hand {median_ci([r['python'] - r['hand'] for r in rs])}")  # fmt: skip


if __name__ == "__main__":
    main()
