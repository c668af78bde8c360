"""Stream joins with a global table, driven by environment variables, run by real workers.

``TEST_APP_ID``, ``TEST_INPUT`` (orders: String key = order id, JSON value
``{"id": ..., "customer": ...}``), ``TEST_GLOBAL`` (customers: String key, JSON value, read
as a global table), ``TEST_OUTPUT``. Each order is joined twice, by ``join`` into
``<TEST_OUTPUT>-inner`` and by ``left_join`` into ``<TEST_OUTPUT>-left``; a result is
``[order id, customer value or None]``. ``TEST_JOIN_PAUSES`` (order ids) stops the worker
mid-transaction when it reaches them (tests/apps/join_pauses.py), for a SIGKILL there.
"""

from __future__ import annotations

import os

import eokafka
from eokafka import serdes
from tests.apps.eos_copy import INPUT, OUTPUT
from tests.apps.join_pauses import pause

S, J = serdes.String(), serdes.Json()
GLOBAL = os.environ.get("TEST_GLOBAL", "global-customers")

app = eokafka.App(os.environ.get("TEST_APP_ID", "global-joins"))
orders = app.stream(INPUT, key_serde=S, value_serde=J).peek(lambda k, v: pause(k, v["id"]))
customers = app.global_table(GLOBAL, key_serde=S, value_serde=J)
for kind, join in (("inner", orders.join), ("left", orders.left_join)):
    join(customers, lambda o, c: [o["id"], c], key=lambda k, v: v["customer"]).to(
        f"{OUTPUT}-{kind}", key_serde=S, value_serde=J
    )
