"""The worker loop's own CPU per record, over the in-memory Kafka of eokafka.testing.

No broker and no librdkafka: the worker that `eokafka run` starts, with the test driver's
in-memory clients under it, consumes N records from 4 partitions, processes them (the
passthrough and count-by-key benchmark apps, JSON values) and commits every
``--commit-every`` records; the figure is process CPU time over records, from the first
step to the last commit. The in-memory clients cost CPU too (the same in every run), so
this tells the runtime's changes apart, not what a worker costs against a real broker
(benchmarks/passthrough.py and count_by_key.py do that).

With ``--baseline TREE`` (a checkout of another commit: ``git worktree add /tmp/base
<commit>``) every app also runs from that tree, in a process of its own, right after each
round of this tree's: rounds interleave, and the summary gives medians and the round-by-
round range of the ratio new / baseline.

    python -m benchmarks.loop --records 200000 --rounds 5 --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eokafka.testing.cluster import MemoryCluster

APPS = {"passthrough": "benchmarks.apps.passthrough", "count": "benchmarks.apps.count_bench"}
REPO_ROOT = Path(__file__).resolve().parent.parent


def filled_cluster(cluster: MemoryCluster, records: int, keys: int) -> MemoryCluster:
    """Topic ``in`` (4 partitions) holding ``records`` JSON values of ``keys`` users."""
    cluster.create_topic("in", 4)
    for i in range(records):
        value = json.dumps({"id": i, "user": f"user-{i % keys:05d}", "pad": "x" * 40})
        cluster.append("in", i % 4, f"user-{i % keys:05d}".encode(), value.encode(), 0, None)
    return cluster


def one_run(app_name: str, records: int, keys: int, commit_every: int) -> float:
    """CPU µs per record of one worker over ``records`` in-memory inputs (this process)."""
    os.environ.update(BENCH_INPUT="in", BENCH_OUTPUT="out", EOKAFKA_COMMIT_EVERY=str(commit_every))
    from importlib import import_module

    from eokafka import config
    from eokafka.metrics import WorkerMetrics
    from eokafka.runtime.clients import Clients  # the same module path in both layouts
    from eokafka.testing.clients import MemoryAdmin, MemoryConsumer, MemoryProducer, no_leave
    from eokafka.testing.cluster import MemoryCluster

    try:
        from eokafka.runtime.process.worker import Worker
    except ImportError:  # a tree from before the runtime's layout by job
        from eokafka.runtime.worker import Worker  # type: ignore[no-redef]

    app = import_module(APPS[app_name]).app
    cluster = filled_cluster(MemoryCluster(4), records, keys)
    clients = Clients(
        consumer=lambda conf: MemoryConsumer(cluster, conf),
        restore_consumer=lambda conf: MemoryConsumer(cluster, conf),
        producer=lambda conf: MemoryProducer(cluster, conf),
        admin=lambda conf: MemoryAdmin(cluster, conf),
        leave=no_leave,
        release_predecessor=no_leave,
        clock=cluster.clock,
    )
    state = tempfile.mkdtemp(prefix="eokafka-loop-")
    cli = {"create_topics": True, "state_dir": state, "batch_size": 1000}
    settings = config.resolve(app.application_id, {}, env=os.environ, cli=cli)
    metrics = WorkerMetrics(app.application_id, "loop", "bench")
    worker = Worker(app.topology, settings, "loop", metrics, clients=clients)
    step = getattr(worker, "step", None) or worker._step
    worker.start()
    started = time.process_time()
    while cluster.group_offsets.get(app.application_id, {}) != {
        ("in", p): records // 4 + (p < records % 4) for p in range(4)
    }:
        step()
        cluster.now_ms += 100  # every step a commit interval later: commits as they are due
    took = time.process_time() - started
    worker.stop()
    return took / records * 1e6


def _measure(tree: Path, app: str, args: argparse.Namespace) -> float:
    # This script by its path, eokafka and the apps from ``tree`` (first on the path).
    cmd = [sys.executable, __file__, "--one", app, "--records", str(args.records),
           "--keys", str(args.keys), "--commit-every", str(args.commit_every)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(cmd, cwd=tree, env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--commit-every", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--apps", default=",".join(APPS), help=f"of {', '.join(APPS)}")
    p.add_argument("--baseline", type=Path, metavar="TREE", help="another commit's checkout")
    p.add_argument("--one", choices=APPS, help=argparse.SUPPRESS)  # a child: one run
    args = p.parse_args()
    if args.one:
        print(f"{one_run(args.one, args.records, args.keys, args.commit_every):.3f}")
        return
    apps = [a.strip() for a in args.apps.split(",") if a.strip()]
    trees = {"this": REPO_ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    figures: dict[tuple[str, str], list[float]] = {}
    for rnd in range(1, args.rounds + 1):
        for app in apps:
            for label, tree in trees.items():
                us = _measure(tree, app, args)
                figures.setdefault((app, label), []).append(us)
                print(f"round {rnd} {app:<12} {label:<9} {us:7.2f} us/record", flush=True)
    summary: dict[str, dict[str, float | list[float]]] = {}
    for app in apps:
        this = figures[(app, "this")]
        row: dict[str, float | list[float]] = {"this_us": statistics.median(this)}
        if args.baseline:
            base = figures[(app, "baseline")]
            ratios = [a / b for a, b in zip(this, base, strict=True)]
            row.update(baseline_us=statistics.median(base),
                       ratio=statistics.median(this) / statistics.median(base),
                       ratio_range=[min(ratios), max(ratios)])  # fmt: skip
        summary[app] = row
    print(json.dumps({"records": args.records, "rounds": args.rounds, "apps": summary}))


if __name__ == "__main__":
    main()
