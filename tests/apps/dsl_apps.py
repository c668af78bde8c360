"""DSL test topologies driven by environment variables, run by real worker processes.

``TEST_APP_ID``, ``TEST_INPUT``, ``TEST_OUTPUT`` as in eos_copy.py; ``TEST_OUTPUT2`` for a
second output, ``TEST_TABLE`` for the table topic, ``TEST_BACKEND`` for the stores.

* ``wordcount``: words of String sentences, counted through a repartition (by lowercase word).
* ``customers``: orders re-keyed by customer; sum/max/count per customer and the largest
  order per customer (two aggregations sharing one repartition).
* ``joins``: orders joined (inner and left) with a product price table.
"""

from __future__ import annotations

import os
from typing import Any

import eokafka
from eokafka import serdes

APP_ID = os.environ.get("TEST_APP_ID", "dsl")
INPUT = os.environ.get("TEST_INPUT", "dsl-in")
OUTPUT = os.environ.get("TEST_OUTPUT", "dsl-out")
OUTPUT2 = os.environ.get("TEST_OUTPUT2", "dsl-out2")
TABLE = os.environ.get("TEST_TABLE", "dsl-table")
BACKEND: Any = os.environ.get("TEST_BACKEND", "memory")
S, J = serdes.String(), serdes.Json()

wordcount = eokafka.App(APP_ID)
wordcount.store("word-counts", backend=BACKEND)
(
    wordcount.stream(INPUT, key_serde=S, value_serde=S)
    .flat_map(lambda k, v: [(w.lower(), w) for w in v.split()])
    .filter(lambda word, _: len(word) > 2)
    .group_by_key(name="by-word")
    .count(name="word-counts")
    .to(OUTPUT, key_serde=S, value_serde=J)
)


def _add_order(customer: str, order: dict[str, Any], agg: dict[str, int]) -> dict[str, int]:
    return {
        "n": agg["n"] + 1,
        "sum": agg["sum"] + order["amount"],
        "max": max(agg["max"], order["amount"]),
    }


customers = eokafka.App(APP_ID)
customers.store("customer-stats", backend=BACKEND)
by_customer = customers.stream(INPUT, key_serde=S, value_serde=J).group_by(
    lambda _, order: order["customer"], name="by-customer"
)
by_customer.aggregate(lambda: {"n": 0, "sum": 0, "max": 0}, _add_order, name="customer-stats").to(
    OUTPUT, key_serde=S, value_serde=J
)
by_customer.reduce(
    lambda best, order: order if order["amount"] > best["amount"] else best,
    name="largest-order",
).to(OUTPUT2, key_serde=S, value_serde=J)

joins = eokafka.App(APP_ID)
prices = joins.table(TABLE, name="prices", key_serde=S, value_serde=J)
orders = joins.stream(INPUT, key_serde=S, value_serde=J)
orders.join(prices, lambda o, p: {"id": o["id"], "total": o["qty"] * p["price"]}).to(
    OUTPUT, key_serde=S, value_serde=J
)
orders.left_join(prices, lambda o, p: {"id": o["id"], "price": p and p["price"]}).to(
    OUTPUT2, key_serde=S, value_serde=J
)
