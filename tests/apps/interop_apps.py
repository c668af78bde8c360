"""Test apps for interop with other clients (invariant 15), run by real workers.

``TEST_APP_ID``, ``TEST_INPUT``, ``TEST_OUTPUT``, ``TEST_OUTPUT2`` and ``TEST_TABLE`` as in
dsl_apps.py.

* ``rekeyed_join``: orders keyed by order id, re-keyed by product through
  ``<app id>-by-product-repartition`` and left-joined with the price table ``TEST_TABLE``;
  out: ``[order id, price or None]`` keyed by product.
* ``fan_out``: one stream in two branches: a count per key (a store write) to ``TEST_OUTPUT``,
  then a check that raises on ``{"bad": true}`` before copying to ``TEST_OUTPUT2``.
"""

from __future__ import annotations

import os
from typing import Any

import eokafka
from eokafka import serdes

APP_ID = os.environ.get("TEST_APP_ID", "interop")
INPUT = os.environ.get("TEST_INPUT", "interop-in")
OUTPUT = os.environ.get("TEST_OUTPUT", "interop-out")
OUTPUT2 = os.environ.get("TEST_OUTPUT2", "interop-out2")
TABLE = os.environ.get("TEST_TABLE", "interop-table")
S, J = serdes.String(), serdes.Json()

rekeyed_join = eokafka.App(APP_ID)
prices = rekeyed_join.table(TABLE, name="prices", key_serde=S, value_serde=J)
(
    rekeyed_join.stream(INPUT, key_serde=S, value_serde=J)
    .map(lambda _, order: (order["product"], order))
    .left_join(prices, lambda order, price: [order["id"], price], name="by-product")
    .to(OUTPUT, key_serde=S, value_serde=J)
)


def _checked(order: dict[str, Any]) -> dict[str, Any]:
    if order.get("bad"):
        raise ValueError(f"order {order['id']} is bad")
    return order


fan_out = eokafka.App(APP_ID)
orders = fan_out.stream(INPUT, key_serde=S, value_serde=J)
orders.group_by_key().count(name="counts").to(OUTPUT, key_serde=S, value_serde=J)
orders.map_values(_checked).to(OUTPUT2, key_serde=S, value_serde=J)
