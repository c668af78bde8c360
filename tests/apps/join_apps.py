"""Windowed stream-stream join topology driven by environment variables, run by real workers.

``TEST_APP_ID``, ``TEST_INPUT`` (the left stream), ``TEST_INPUT2`` (the right stream),
``TEST_OUTPUT``. The two streams are joined three times, by ``join``, ``left_join`` and
``outer_join`` (stores ``inner-*``, ``left-*``, ``outer-*``), into ``<TEST_OUTPUT>-inner``,
``-left`` and ``-outer``. Values are JSON strings under String keys; a result is
``[left, right]`` (None for the side that joined nothing) at the time the join gives it.
``TEST_JOIN_PAUSES`` (left values) stops the worker mid-transaction when it reaches them, as
tests/apps/eos_copy.py does, so a test can SIGKILL it there.
"""

from __future__ import annotations

import os

import eokafka
from eokafka import JoinWindows, serdes
from tests.apps.eos_copy import INPUT, OUTPUT
from tests.apps.join_pauses import pause

S, J = serdes.String(), serdes.Json()
INPUT2 = os.environ.get("TEST_INPUT2", "join-in2")
WINDOW = JoinWindows(before_ms=200, after_ms=300, grace_ms=1000)


app = eokafka.App(os.environ.get("TEST_APP_ID", "stream-joins"))
left = app.stream(INPUT, key_serde=S, value_serde=J).peek(pause)
right = app.stream(INPUT2, key_serde=S, value_serde=J)
for kind, join in (("inner", left.join), ("left", left.left_join), ("outer", left.outer_join)):
    app.store(f"{kind}-left", backend="rocksdb")  # one side persistent, the other in memory
    join(right, lambda lv, rv: [lv, rv], window=WINDOW, name=kind).to(
        f"{OUTPUT}-{kind}", key_serde=S, value_serde=J
    )
