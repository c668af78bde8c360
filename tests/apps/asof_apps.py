"""A time-aligned stream-table join, run by real workers: ``TEST_INPUT`` (the stream of
``{"v": ...}`` values) left-joins the versioned table on ``TEST_INPUT2`` as of each record's
time, waiting for the table, into ``TEST_OUTPUT`` as ``[v, table value]``. String keys, JSON
values. ``TEST_JOIN_PAUSES`` names stream values (``s...``) and table values (``t...``) at
which the worker stops mid-transaction, as tests/apps/eos_copy.py does: a table value after
the results it released are sent, so a test can SIGKILL it there. ``TEST_MAX_WAIT_MS`` and
``TEST_RELEASE_IDLE_MS`` set the join's wait (an hour by default) and its release on idle
(none by default).
"""

from __future__ import annotations

import os

import eokafka
from eokafka import serdes
from tests.apps.eos_copy import INPUT, OUTPUT
from tests.apps.join_pauses import pause

S, J = serdes.String(), serdes.Json()
app = eokafka.App(os.environ.get("TEST_APP_ID", "asof-join"))
app.store("prices", backend="rocksdb")
prices = app.table(os.environ.get("TEST_INPUT2", "asof-in2"), name="prices", key_serde=S,
                   value_serde=J, history_ms=3_600_000)  # fmt: skip
clicks = app.stream(INPUT, key_serde=S, value_serde=J).peek(pause)
idle = os.environ.get("TEST_RELEASE_IDLE_MS")
joined = clicks.left_join(
    prices,
    lambda c, p: [c, p],
    name="priced",
    max_wait_ms=int(os.environ.get("TEST_MAX_WAIT_MS", 3_600_000)),
    release_on_idle_ms=None if idle is None else int(idle),
)
joined.to(OUTPUT, key_serde=S, value_serde=J)
prices.to_stream().peek(pause)  # after the join's release: its results are sent by then
