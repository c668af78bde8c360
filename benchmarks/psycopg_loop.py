"""The yardstick for the PostgreSQL sink: a plain at-least-once consume-insert-commit loop.

Consumes a batch, inserts it with COPY, commits PostgreSQL, then commits the consumer's
offsets: a crash between the two commits inserts the batch again on restart. This is what a
hand-written sink usually does. Run by benchmarks/sink_throughput.py.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import psycopg
from confluent_kafka import Consumer


def main() -> None:
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    consumer = Consumer(
        {
            "bootstrap.servers": os.environ["BENCH_BOOTSTRAP"],
            "group.id": os.environ["BENCH_APP_ID"],
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([os.environ["BENCH_INPUT"]])
    table = os.environ["BENCH_TABLE"]
    with psycopg.connect(os.environ["BENCH_DSN"]) as conn:
        while not stopping:
            msgs = [m for m in consumer.consume(1000, 0.1) if m.error() is None]
            if not msgs:
                continue
            with conn.cursor() as cur, cur.copy(
                f"COPY {table} (id, amount, src) FROM STDIN"
            ) as copy:
                for m in msgs:
                    v = json.loads(m.value())
                    copy.write_row((v["id"], v["amount"], v["src"]))
            conn.commit()
            consumer.commit(asynchronous=False)
    consumer.close()


if __name__ == "__main__":
    main()
