"""Exactly-once joins: a windowed stream-stream join and an as-of join with a versioned table.

``streams`` joins the orders (``BENCH_INPUT``) with the payments (``BENCH_OTHER``) of the same
key within ``BENCH_JOIN_WINDOW_MS`` either way (``JoinWindows(before_ms=after_ms=...,
grace_ms=BENCH_GRACE_MS)``); each result is the order with the payment's id added. ``asof``
joins each record of ``BENCH_INPUT`` with the version of its key in the table
``BENCH_OTHER`` (``history_ms=BENCH_HISTORY_MS``) valid at the record's time, waiting up to
``BENCH_MAX_WAIT_MS`` of stream time for the table to catch up; each result is the record
with the version's number and price added. Values are JSON (``serdes.Json``), keys Strings;
the join stores use ``BENCH_BACKEND`` (default memory). benchmarks/joins.py runs them.
"""

from __future__ import annotations

import os
from typing import Any

import eokafka
from eokafka import JoinWindows, serdes

APP_ID = os.environ.get("BENCH_APP_ID", "bench-join")
IN = os.environ.get("BENCH_INPUT", "bench-join-in")
OTHER = os.environ.get("BENCH_OTHER", "bench-join-other")
OUT = os.environ.get("BENCH_OUTPUT", "bench-join-out")
BACKEND: Any = os.environ.get("BENCH_BACKEND", "memory")
S, J = serdes.String(), serdes.Json()


def _setting(name: str) -> int:
    return int(os.environ.get(f"BENCH_{name}", "0"))


def paid(order: dict, payment: dict) -> dict:
    return {**order, "payment": payment["id"]}


def priced(record: dict, version: dict) -> dict:
    return {**record, "version": version["version"], "price": version["price"]}


def _streams() -> eokafka.App:
    app = eokafka.App(APP_ID)
    for store in ("paid-left", "paid-right"):
        app.store(store, backend=BACKEND)
    window = _setting("JOIN_WINDOW_MS")
    orders = app.stream(IN, key_serde=S, value_serde=J)
    payments = app.stream(OTHER, key_serde=S, value_serde=J)
    orders.join(
        payments,
        paid,
        window=JoinWindows(before_ms=window, after_ms=window, grace_ms=_setting("GRACE_MS")),
        name="paid",
    ).to(OUT, key_serde=S, value_serde=J)
    return app


def _asof() -> eokafka.App:
    app = eokafka.App(APP_ID)
    for store in ("prices", "priced-waiting"):
        app.store(store, backend=BACKEND)
    prices = app.table(OTHER, name="prices", key_serde=S, value_serde=J,
                       history_ms=_setting("HISTORY_MS"))  # fmt: skip
    app.stream(IN, key_serde=S, value_serde=J).join(
        prices, priced, name="priced", max_wait_ms=_setting("MAX_WAIT_MS")
    ).to(OUT, key_serde=S, value_serde=J)
    return app


def __getattr__(name: str) -> eokafka.App:
    """``streams`` or ``asof``, built when asked for: each reads only its own settings."""
    builders = {"streams": _streams, "asof": _asof}
    if name not in builders:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    app = builders[name]()
    globals()[name] = app
    return app
