"""A tumbling count (emit="final") whose windows close on idle partitions when
``TEST_IDLE_MS`` is set (``window(close_on_idle_ms=)``), run by real worker processes.

``TEST_APP_ID``, ``TEST_INPUT``, ``TEST_OUTPUT`` as in eos_copy.py; inputs are String keys
(values unused), event time the record timestamp; outputs windowed String keys, JSON counts.
"""

from __future__ import annotations

import os

import eokafka
from eokafka import serdes, windows
from tests.apps.eos_copy import INPUT, OUTPUT

SIZE_MS, GRACE_MS = 1_000, 4_000
IDLE_MS = int(os.environ.get("TEST_IDLE_MS") or 0) or None

app = eokafka.App(os.environ.get("TEST_APP_ID", "idle-windows"))
(
    app.stream(INPUT, key_serde=serdes.String())
    .group_by_key()
    .window(windows.Tumbling(SIZE_MS, grace_ms=GRACE_MS), close_on_idle_ms=IDLE_MS)
    .count(name="c", emit="final")
    .to(OUTPUT, value_serde=serdes.Json())
)
