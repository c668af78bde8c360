"""Demo: payments -> PostgreSQL (ledger + running totals) and Kafka, with a SIGKILL in between.

Starts a local broker and a throwaway PostgreSQL, feeds sample payments, runs
examples/payments.py as a real worker that SIGKILLs itself once between the PostgreSQL
``PREPARE TRANSACTION`` and the Kafka commit (the sink's crash-point test hook), restarts
it, then checks the tables with SQL and with ``eokafka verify``.

Run from the repository root: ``python -m examples.payments_demo`` (see the README).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.postgres.devserver import LocalPostgres
from eokafka.devbroker import BrokerError, default_home, start_broker, stop_broker
from eokafka.verify import verify
from examples.payments import TABLES_DDL

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9092, help="broker port")
    parser.add_argument("--payments", type=int, default=5000)
    args = parser.parse_args()
    home = default_home().parent / "payments-demo-broker"
    print("[1/6] starting a local Kafka broker and a throwaway PostgreSQL")
    try:
        info = start_broker(port=args.port, home=home, fresh=True)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    pg = LocalPostgres()
    worker: subprocess.Popen[bytes] | None = None
    try:
        print(f"      bootstrap {info.bootstrap}; PostgreSQL: {pg.dsn}")
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            for ddl in TABLES_DDL:
                conn.execute(ddl)
        admin = AdminClient({"bootstrap.servers": info.bootstrap})
        for future in admin.create_topics(
            [NewTopic(t, 3, 1) for t in ("payments", "payment-totals")]
        ).values():
            future.result(30)
        del admin  # its connections would outlive the broker and log noise

        print(f"[2/6] feeding {args.payments} payments over 20 accounts into 'payments'")
        rng = random.Random(7)
        expected: dict[str, list[int]] = {}
        # Keys partitioned as eokafka and the Java client partition them (murmur2).
        producer = Producer({"bootstrap.servers": info.bootstrap, "enable.idempotence": True,
                             "partitioner": "murmur2_random"})
        for n in range(args.payments):
            account, amount = f"acct-{rng.randrange(20):02d}", rng.randrange(1, 1000)
            row = expected.setdefault(account, [0, 0])
            row[0] += amount
            row[1] += 1
            producer.produce("payments", json.dumps({"id": n, "amount": amount}), account)
        producer.flush(30)
        del producer

        flag = Path(tempfile.mkdtemp()) / "crashed"
        env = {
            **os.environ,
            "PAYMENTS_DSN": pg.dsn,
            "EOKAFKA_COMMIT_EVERY": "500",
            "EOKAFKA_TEST_CRASH_AT": "postgres.after-prepare:3",
            "EOKAFKA_TEST_CRASH_FLAG": str(flag),
        }
        cmd = [sys.executable, "-m", "eokafka", "run", "examples.payments:app",
               "--bootstrap-servers", info.bootstrap, "--state-dir", str(home / "state"),
               "--instance-id", "demo"]  # fmt: skip
        log_path = home / "worker.log"
        print("[3/6] running examples.payments:app; it SIGKILLs itself once after a PREPARE")
        print("      $ eokafka run " + " ".join(cmd[4:]))
        with open(log_path, "ab") as log:
            worker = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
            code = worker.wait(120)
            print(f"      worker died with {signal.Signals(-code).name if code < 0 else code}; "
                  "a prepared PostgreSQL transaction is left behind")
            print("[4/6] restarting it: it rolls that transaction back (Kafka never committed it)")
            worker = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

        def table() -> dict[str, list[int]]:
            with psycopg.connect(pg.dsn) as conn:
                rows = conn.execute("SELECT account, total, payments FROM account_totals")
                return {a: [t, n] for a, t, n in rows.fetchall()}

        deadline = time.monotonic() + 120
        while sum(n for _, n in table().values()) < args.payments and time.monotonic() < deadline:
            time.sleep(0.2)
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        got = table()
        print("[5/6] account_totals (first 5 rows):")
        for account in sorted(got)[:5]:
            print(f"      {account}: total {got[account][0]}, {got[account][1]} payments")
        print("[6/6] $ eokafka verify payments postgres:payment_ledger --fields amount")
        report = verify(info.bootstrap, "payments", "postgres:payment_ledger",
                        fields=["amount"], dsn=pg.dsn)
        print("      " + report.summary().replace("\n", "\n      "))
        ok = got == expected and report.ok
        print("demo OK: every payment exactly once in PostgreSQL" if ok else "demo FAILED")
        return 0 if ok else 1
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        pg.close()
        stop_broker(home=home)
        print("broker and PostgreSQL stopped")


if __name__ == "__main__":
    os.chdir(REPO)
    raise SystemExit(main())
