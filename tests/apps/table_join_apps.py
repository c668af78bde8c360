"""Table-table joins run by real workers: the tables on ``TEST_INPUT`` and ``TEST_INPUT2``
(String keys, JSON values, None deletes) joined three ways (``join``, ``left_join``,
``outer_join``) into ``<TEST_OUTPUT>-inner``, ``-left`` and ``-outer`` as ``[left, right]``.
``TEST_JOIN_PAUSES`` names left values at which the worker stops mid-transaction (after the
joins of that update are sent), as tests/apps/eos_copy.py does.
"""

from __future__ import annotations

import os

import eokafka
from eokafka import serdes
from tests.apps.eos_copy import INPUT, OUTPUT
from tests.apps.join_pauses import pause

S, J = serdes.String(), serdes.Json()
app = eokafka.App(os.environ.get("TEST_APP_ID", "table-joins"))
app.store("lt", backend="rocksdb")
left = app.table(INPUT, name="lt", key_serde=S, value_serde=J)
right = app.table(os.environ.get("TEST_INPUT2", "tj-in2"), name="rt", key_serde=S, value_serde=J)
for kind, join in (("inner", left.join), ("left", left.left_join), ("outer", left.outer_join)):
    join(right, lambda lv, rv: [lv, rv], name=f"joined-{kind}").to(
        f"{OUTPUT}-{kind}", key_serde=S, value_serde=J
    )
left.to_stream().peek(pause)
