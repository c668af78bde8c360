"""Foreign-key table-table joins run by real workers: orders on ``TEST_INPUT`` (String keys,
JSON values ``{"id": ..., "customer": key or None}``, None deletes) join the customers on
``TEST_INPUT2`` (String keys, JSON values) by ``value["customer"]``, two ways (``join``,
``left_join``) into ``<TEST_OUTPUT>-inner`` and ``-left`` as ``[order id, customer]``.
``TEST_JOIN_PAUSES`` names order ids and customer values at which the worker stops
mid-transaction (after that update's subscription or responses are sent).
"""

from __future__ import annotations

import os
from typing import Any

import eokafka
from eokafka import serdes
from tests.apps.eos_copy import INPUT, OUTPUT
from tests.apps.join_pauses import pause

S, J = serdes.String(), serdes.Json()
app = eokafka.App(os.environ.get("TEST_APP_ID", "fk-joins"))
app.store("orders", backend="rocksdb")
orders = app.table(INPUT, name="orders", key_serde=S, value_serde=J)
customers = app.table(
    os.environ.get("TEST_INPUT2", "fk-in2"), name="customers", key_serde=S, value_serde=J
)


def joined(order: dict[str, Any], customer: Any) -> list[Any]:
    return [order["id"], customer]


for kind, join in (("inner", orders.join), ("left", orders.left_join)):
    join(customers, joined, name=f"fk-{kind}", foreign_key=lambda v: v["customer"]).to(
        f"{OUTPUT}-{kind}", key_serde=S, value_serde=J
    )
orders.to_stream().peek(lambda key, value: pause(key, value and value["id"]))
customers.to_stream().peek(pause)
