"""Windowed test topology driven by environment variables, run by real worker processes.

``TEST_APP_ID``, ``TEST_INPUT``, ``TEST_OUTPUT`` as in eos_copy.py, and:

* ``TEST_WINDOW``: tumbling, hopping, sliding or session (sizes as in tests/windows_reference
  specs below: ``SPECS``); ``TEST_AGG``: count, sum, min, max, mean, aggregate or reduce;
  ``TEST_EMIT``: update or final; ``TEST_LATE``: drop or dead-letter.
* ``TEST_TS_FIELD=1``: event time from the value's ``ts`` (else the record timestamp).
* ``TEST_RETENTION_MS``: the window changelog's retention.ms (``window(retention_ms=)``).
* ``TEST_PAUSE_DIR``: the worker stops right after emitting the final result of a window whose
  start is in ``TEST_PAUSE_STARTS`` (before the commit), once per start, so a test can SIGKILL
  it between closing a window and committing.

Inputs are ``{"ts": ms, "v": int}`` JSON values under String keys; outputs are windowed keys
(``WindowedSerde(String())``) and JSON values.
"""

from __future__ import annotations

import os
from typing import Any

import eokafka
from eokafka import serdes
from eokafka.windows import WindowedSerde
from tests.apps.eos_copy import INPUT, OUTPUT, _pause_once
from tests.windows_reference import SPECS

S, J = serdes.String(), serdes.Json()
KIND = os.environ.get("TEST_WINDOW", "tumbling")
AGG = os.environ.get("TEST_AGG", "count")
EMIT: Any = os.environ.get("TEST_EMIT", "final")
LATE: Any = os.environ.get("TEST_LATE", "drop")
PAUSE_STARTS = {int(x) for x in os.environ.get("TEST_PAUSE_STARTS", "").split(",") if x}
RETENTION_MS = int(os.environ.get("TEST_RETENTION_MS") or 0) or None


def _event_time(record: eokafka.Record) -> int:
    return record.value["ts"]  # type: ignore[no-any-return]


def _pause(key: eokafka.Windowed, value: Any) -> None:
    if key.start in PAUSE_STARTS:
        _pause_once(key.start)


app = eokafka.App(os.environ.get("TEST_APP_ID", "windows"))
app.store("agg", backend=os.environ.get("TEST_BACKEND", "memory"))  # type: ignore[arg-type]
timestamp = _event_time if os.environ.get("TEST_TS_FIELD") else None
windowed = (
    app.stream(INPUT, key_serde=S, value_serde=J, timestamp=timestamp)
    .map_values(lambda v: v["v"])
    .group_by_key()
    .window(SPECS[KIND][1], late=LATE, retention_ms=RETENTION_MS)
)
if AGG == "aggregate":
    table = windowed.aggregate(
        lambda: 0, lambda k, v, a: a + v, merger=lambda k, a, b: a + b, name="agg", emit=EMIT
    )
elif AGG == "reduce":
    table = windowed.reduce(max, name="agg", emit=EMIT)
else:
    table = getattr(windowed, AGG)(name="agg", emit=EMIT)
table.to_stream().peek(_pause).to(OUTPUT, key_serde=WindowedSerde(S), value_serde=J)
