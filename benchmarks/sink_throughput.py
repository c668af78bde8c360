"""Sink throughput: records/s into PostgreSQL (both modes) and files, beside Kafka passthrough.

One input topic filled once, then each contender in turn as a process of its own, with its
own consumer group and destination: eokafka's PostgreSQL sink in two-phase mode and in
offsets-in-the-database mode, the file sink (JSON Lines), a plain at-least-once psycopg loop
(COPY + commit + consumer commit, benchmarks/psycopg_loop.py) and eokafka's exactly-once
Kafka passthrough. The clock runs from process start until the group's committed offsets
reach the end of the input; then the destination is checked to hold every id exactly once.

    python -m benchmarks.sink_throughput                       # 200,000 records, own broker
    python -m benchmarks.sink_throughput --records 50000 --bootstrap 127.0.0.1:39092
    python -m benchmarks.sink_throughput --dsn 'host=... dbname=...'   # an existing server
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, TopicPartition

from benchmarks.common import (
    BulkWriter,
    WorkerProcess,
    broker,
    child_env,
    count_ids,
    create_topics,
    delete_topics,
    exit_on_sigterm,
    python_cmd,
    unique,
)

CONTENDERS = ("pg-two-phase", "pg-offsets", "files", "psycopg-loop", "passthrough")
PARTITIONS = 4


@contextlib.contextmanager
def postgres(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    from connectors.postgres.devserver import LocalPostgres

    server = LocalPostgres()
    try:
        yield server.dsn
    finally:
        server.close()


def caught_up(bootstrap: str, group: str, topic: str, records: int) -> bool:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        got = consumer.committed(tps, timeout=10)
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in got) >= records


def destination_ids(kind: str, dsn: str, table: str, folder: Path, bootstrap: str,
                    out_topic: str) -> tuple[int, int]:
    """(records, distinct ids) at the destination."""
    if kind == "files":
        ids = [json.loads(line)["id"] for p in folder.glob("*.jsonl")
               for line in p.read_text().splitlines()]
        return len(ids), len(set(ids))
    if kind == "passthrough":
        counts = count_ids(bootstrap, out_topic, PARTITIONS)
        return sum(counts.values()), len(counts)
    with psycopg.connect(dsn) as conn:
        n, distinct = conn.execute(f"SELECT count(*), count(DISTINCT id) FROM {table}").fetchone()
    return n, distinct


def run(kind: str, bootstrap: str, dsn: str, src: str, records: int, work: Path) -> None:
    app_id, table = unique(f"sinkbench-{kind}"), unique("bench").replace("-", "_")
    folder = work / app_id
    out_topic = unique("sinkbench-out")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint, amount integer, src text)")
    env = child_env(BENCH_APP_ID=app_id, BENCH_INPUT=src, BENCH_DSN=dsn, BENCH_TABLE=table,
                    BENCH_DIR=str(folder), BENCH_SINK=kind, BENCH_BOOTSTRAP=bootstrap,
                    BENCH_OUTPUT=out_topic)
    run_args = ["--bootstrap-servers", bootstrap, "--state-dir", str(work / "state"),
                "--instance-id", "bench"]
    if kind == "psycopg-loop":
        cmd = python_cmd("-m", "benchmarks.psycopg_loop")
    elif kind == "passthrough":
        create_topics(bootstrap, [out_topic], PARTITIONS)
        cmd = python_cmd("-m", "eokafka", "run", "benchmarks.apps.passthrough:app", *run_args)
    else:
        cmd = python_cmd("-m", "eokafka", "run", "benchmarks.apps.sink_bench:app", *run_args)
    proc = WorkerProcess(kind, cmd, env, work)
    try:
        while not caught_up(bootstrap, app_id, src, records):
            if not proc.alive():
                raise RuntimeError(f"{kind} exited early:\n{proc.log_tail()}")
            time.sleep(0.2)  # poll interval
        seconds = time.monotonic() - proc.started_at
    finally:
        proc.stop()
    n, distinct = destination_ids(kind, dsn, table, folder, bootstrap, out_topic)
    verdict = "every id once" if n == distinct == records else f"{n} records, {distinct} ids"
    print(f"{kind:>13}: {records / seconds:>9,.0f} records/s ({records} in {seconds:.1f} s, "
          f"process start to last commit); destination: {verdict}", flush=True)
    if kind == "passthrough":
        delete_topics(bootstrap, [out_topic])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--bootstrap", help="an existing broker (default: start one)")
    parser.add_argument("--dsn", help="an existing PostgreSQL with max_prepared_transactions > 0")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    args = parser.parse_args()
    exit_on_sigterm()
    with broker(args.bootstrap) as bootstrap, postgres(args.dsn) as dsn, \
            tempfile.TemporaryDirectory(prefix="eokafka-sinkbench-") as tmp:
        src = unique("sinkbench-in")
        create_topics(bootstrap, [src], PARTITIONS)
        writer = BulkWriter(bootstrap)
        for n in range(args.records):
            value = json.dumps({"id": n, "amount": n % 97, "src": f"r{n}"}).encode()
            writer.send(src, value, str(n).encode(), partition=n % PARTITIONS)
        writer.finish("input")
        print(f"input: {args.records} records over {PARTITIONS} partitions", flush=True)
        try:
            for kind in args.contenders.split(","):
                run(kind, bootstrap, dsn, src, args.records, Path(tmp))
        finally:
            if args.bootstrap:
                delete_topics(bootstrap, [src])


if __name__ == "__main__":
    main()
