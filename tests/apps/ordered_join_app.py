"""An inner stream-stream join with a short grace, for a backlog read in timestamp order.

``TEST_APP_ID``, ``TEST_INPUT`` (left), ``TEST_INPUT2`` (right), ``TEST_OUTPUT``. Values are
JSON under String keys; a result is ``[left, right]``. The grace (1 s) is far shorter than
how far one topic's fetches can run ahead of the other's on a backlog.
"""

from __future__ import annotations

import os

import eokafka
from eokafka import JoinWindows, serdes
from tests.apps.eos_copy import INPUT, OUTPUT

S, J = serdes.String(), serdes.Json()
INPUT2 = os.environ.get("TEST_INPUT2", "ordered-join-in2")
WINDOW = JoinWindows(before_ms=50, after_ms=50, grace_ms=1000)

app = eokafka.App(os.environ.get("TEST_APP_ID", "ordered-join"))
left = app.stream(INPUT, key_serde=S, value_serde=J)
right = app.stream(INPUT2, key_serde=S, value_serde=J)
left.join(right, lambda lv, rv: [lv, rv], window=WINDOW, name="ordered").to(
    OUTPUT, key_serde=S, value_serde=J
)
