"""Exactly-once windowed count: records per key and tumbling event-time window.

``final`` emits each window's count once, when stream time passes its end; ``update`` emits
the new count for every input (like count_bench.py, plus the window bookkeeping). Keys are
Strings; the value is parsed with ``serdes.Json`` (``BENCH_VALUES=json``, the benchmarks'
default) or left as bytes (``BENCH_VALUES=bytes``), and the event time is the record timestamp.
Topic names, the application id, the store backend (``BENCH_BACKEND``) and the window size
(``BENCH_WINDOW_MS``, default 10,000) come from the environment.
"""

from __future__ import annotations

import os
from typing import Any

import eokafka
from eokafka import serdes, windows

APP_ID = os.environ.get("BENCH_APP_ID", "bench-windowed")
IN = os.environ.get("BENCH_INPUT", "bench-windowed-in")
OUT = os.environ.get("BENCH_OUTPUT", "bench-windowed-out")
BACKEND: Any = os.environ.get("BENCH_BACKEND", "memory")
VALUES = serdes.Json() if os.environ.get("BENCH_VALUES", "json") == "json" else serdes.Bytes()
WINDOW = windows.Tumbling(int(os.environ.get("BENCH_WINDOW_MS", "10000")))


def _app(emit: Any) -> eokafka.App:
    app = eokafka.App(APP_ID)
    app.store("counts", backend=BACKEND)
    (
        app.stream(IN, key_serde=serdes.String(), value_serde=VALUES)
        .group_by_key()
        .window(WINDOW)
        .count(name="counts", emit=emit)
        .to(OUT, value_serde=serdes.Json())
    )
    return app


final = _app("final")
update = _app("update")
