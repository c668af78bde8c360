"""Payments -> running totals per account -> PostgreSQL tables and a Kafka topic, atomically.

Each Kafka transaction carries the totals' changelog, the updates on ``payment-totals`` and
PostgreSQL transactions appending every payment to ``payment_ledger`` and upserting
``account_totals``, prepared before the Kafka commit and committed after it: the tables
never show a payment twice or lose one, even when the worker is killed at any point.
See the README's connectors section for the demo.
"""

from __future__ import annotations

import os
from typing import Any

import eokafka
from connectors.postgres import PostgresSink
from eokafka import serdes

PAYMENTS = os.environ.get("PAYMENTS_TOPIC", "payments")
TOTALS = os.environ.get("TOTALS_TOPIC", "payment-totals")
TABLE = os.environ.get("PAYMENTS_TABLE", "account_totals")
LEDGER = os.environ.get("PAYMENTS_LEDGER", "payment_ledger")
DSN = os.environ.get("PAYMENTS_DSN", "host=127.0.0.1 user=postgres dbname=postgres")
TABLES_DDL = [
    f"CREATE TABLE IF NOT EXISTS {TABLE} "
    "(account text PRIMARY KEY, total bigint NOT NULL, payments integer NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {LEDGER} (id bigint, account text NOT NULL, amount bigint)",
]

app = eokafka.App(os.environ.get("PAYMENTS_APP_ID", "payments-app"))
app.sink(PostgresSink("account-totals", DSN, TABLE, key=["account"]))
app.sink(PostgresSink("ledger", DSN, LEDGER))


def add(account: str, payment: dict[str, Any], running: dict[str, int]) -> dict[str, int]:
    return {"total": running["total"] + payment["amount"], "payments": running["payments"] + 1}


payments = app.stream(PAYMENTS, key_serde=serdes.String(), value_serde=serdes.Json())
payments.to_sink("ledger", row=lambda account, p: {"id": p["id"], "account": account, **p})
totals = payments.group_by_key().aggregate(
    lambda: {"total": 0, "payments": 0}, add, name="totals"
)
totals.to(TOTALS, key_serde=serdes.String(), value_serde=serdes.Json())
totals.to_sink("account-totals", row=lambda account, running: {"account": account, **running})
