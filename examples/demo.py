"""End-to-end demo: local broker, topics, sample orders, the example app, its output and metrics.

Run from the repository root: ``python -m examples.demo`` (see the README).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from eokafka import toolclients, topic_admin, topic_io
from eokafka.config import Settings
from eokafka.devbroker import BrokerError, default_home, start_broker, stop_broker
from eokafka.logs import setup_command_logging

TOPICS = {"orders": 4, "orders-enriched": 4, "orders-large": 4}
REPO = Path(__file__).resolve().parents[1]


def sample_orders(n: int) -> list[tuple[str, dict[str, object]]]:
    rng = random.Random(7)
    products = [("apple", 0.5), ("coffee", 7.9), ("laptop", 899.0), ("book", 14.5), ("tea", 3.2)]
    orders = []
    for i in range(n):
        items = [
            {"sku": name, "price": price, "qty": rng.randint(1, 5)}
            for name, price in rng.sample(products, rng.randint(1, 3))
        ]
        orders.append((f"customer-{i % 50}", {"order_id": i, "items": items}))
    return orders


def read_committed(settings: Settings, topic: str, want: int, timeout: float) -> list[dict]:
    """Read a topic from the start as read_committed until ``want`` records are seen."""
    consumer = toolclients.consumer(settings)
    start = dict.fromkeys(range(TOPICS[topic]), 0)
    out: list[dict] = []
    try:
        for msg in topic_io.read(consumer, topic, start, deadline=time.monotonic() + timeout):
            out.append(json.loads(msg.value()))
            if len(out) >= want:
                break
    finally:
        consumer.close()
    return out


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("eokafka_") and " " in line:
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9092, help="broker port")
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--metrics-port", type=int, default=9400)
    parser.add_argument("--keep-broker", action="store_true", help="leave the broker running")
    args = parser.parse_args()
    setup_command_logging()  # librdkafka's lines stay out of the terminal
    home = default_home().parent / "demo-broker"

    print("[1/5] starting a local Kafka broker (first run downloads its jars with Maven)")
    try:
        info = start_broker(port=args.port, home=home, fresh=True)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if "in use" in str(exc):
            print("       (or run the demo's own broker elsewhere: --port N)", file=sys.stderr)
        return 1
    print(f"      bootstrap {info.bootstrap}, log {info.log_file}")
    worker: subprocess.Popen[bytes] | None = None
    try:
        print(f"[2/5] creating topics {', '.join(TOPICS)}")
        settings = Settings("eokafka-demo", bootstrap_servers=info.bootstrap)
        topic_admin.create(toolclients.admin(settings), TOPICS)

        print(f"[3/5] feeding {args.orders} sample orders into 'orders'")
        # Keys partitioned as eokafka and the Java client partition them (murmur2).
        producer = toolclients.producer(settings)
        orders = sample_orders(args.orders)
        for key, order in orders:
            producer.produce("orders", json.dumps(order).encode(), key.encode())
        if producer.flush(30):
            raise SystemExit("error: the sample orders were not all written")
        del producer  # closed: no client of the demo outlives the broker

        metrics_url = f"http://127.0.0.1:{args.metrics_port}/metrics"
        print(f"[4/5] running examples.orders:app; metrics at {metrics_url}")
        cmd = [
            sys.executable, "-m", "eokafka", "run", "examples.orders:app",
            "--bootstrap-servers", info.bootstrap,
            "--metrics-port", str(args.metrics_port),
            "--state-dir", str(home / "state"),
        ]  # fmt: skip
        print("      $ eokafka run " + " ".join(cmd[4:]))
        log_path = home / "worker.log"
        with open(log_path, "wb") as log:
            worker = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        enriched = read_committed(settings, "orders-enriched", args.orders, 120)
        large_expected = sum(
            1 for _, o in orders if sum(i["price"] * i["qty"] for i in o["items"]) >= 100
        )
        large = read_committed(settings, "orders-large", large_expected, 30)

        print(f"[5/5] committed output (read_committed); worker log {log_path}")
        print(f"      orders-enriched: {len(enriched)} records (expected {args.orders})")
        print(f"      orders-large:    {len(large)} records (expected {large_expected})")
        for record in sorted(enriched, key=lambda r: r["order_id"])[:3]:
            print(f"      {json.dumps(record)[:110]}")
        deadline = time.monotonic() + 10
        metrics: dict[str, float] = {}
        while time.monotonic() < deadline:
            metrics = scrape(args.metrics_port)
            if metrics.get('eokafka_records_consumed_total{topic="orders"}') == args.orders:
                break
            time.sleep(0.2)
        print(f"      metrics from {metrics_url}:")
        for name in (
            'eokafka_records_consumed_total{topic="orders"}',
            'eokafka_records_produced_total{topic="orders-enriched"}',
            'eokafka_records_produced_total{topic="orders-large"}',
            "eokafka_transactions_committed_total",
        ):
            print(f"        {name} {metrics.get(name, 0):g}")
        ok = len(enriched) == args.orders and len(large) == large_expected
        print("demo OK: every order enriched exactly once" if ok else "demo FAILED")
        return 0 if ok else 1
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            print(f"worker stopped with SIGTERM (exit {worker.wait(30)})")
        if args.keep_broker:
            print(f"broker left running at {info.bootstrap}; stop it with: "
                  f"eokafka broker stop --home {home}")
        else:
            stop_broker(home=home)
            print("broker stopped")


if __name__ == "__main__":
    os.chdir(REPO)
    raise SystemExit(main())
