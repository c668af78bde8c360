"""Timers on a real broker (eokafka/timers.py): stream-time timers fire as the plain-Python
reference says, in event-time order, exactly once, and wall-clock per-key timers fire once
each, while workers (real ``eokafka run`` processes, tests/apps/timer_apps.py) are SIGKILLed
again and again. Outputs are read read_committed once the whole input is committed."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.apps.timer_apps import AT_MS, EVERY_MS, TIMEOUT_MS
from tests.integration.harness import AppTopics, wait_for, worker
from tests.integration.test_dsl import _table_loaded
from tests.kafka_helpers import (
    create_topic,
    end_offsets,
    produce_records,
    read_committed,
    unique_name,
)
from tests.timers_reference import Event, fired

pytestmark = pytest.mark.integration
TARGET = "tests.apps.timer_apps:app"
PARTITIONS = 3


def _input(rng: random.Random, p: int, n: int) -> list[Event]:
    """Out-of-order orders, payments and reminders of one partition; keys name it."""
    out: list[Event] = []
    for i in range(n):
        ts = max(1, i * 20 + rng.randrange(-400, 400))  # 0: "now" to librdkafka
        roll = rng.random()
        if roll < 0.05:
            out.append(("remind", f"r{p}-{i}", ts))
        else:
            kind = "payment" if roll < 0.35 else "order"
            out.append((kind, f"o{p}-{rng.randrange(40)}", ts))
    return out


def _produce(bootstrap: str, topic: str, p: int, events: list[Event]) -> None:
    produce_records(
        bootstrap, topic, [(k.encode(), kind.encode()) for kind, k, _ in events], partition=p,
        timestamps=[ts for *_, ts in events],
    )  # fmt: skip


def _written(bootstrap: str, topic: str) -> int:
    """Records written to ``topic`` so far, open and aborted transactions' included."""
    return sum(end_offsets(bootstrap, topic, "uncommitted").values())


def test_timers_fire_exactly_once_in_event_time_order_through_sigkills(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rng = random.Random(20)
    data = {p: _input(rng, p, 400) for p in range(PARTITIONS)}
    names = AppTopics(unique_name("timers"), unique_name("timers-in"), unique_name("timers-out"))
    for topic in (names.src, names.out):  # event times near 1970: no time retention
        create_topic(kafka_bootstrap, topic, PARTITIONS, config={"retention.ms": "-1"})
    workers = [
        worker(TARGET, kafka_bootstrap, tmp_path, f"w{i}", names.env, ["--instance-id", f"w{i}"])
        for i in range(3)
    ]
    try:
        for w in workers[:2]:
            w.start()
        for i in range(0, 400, 50):  # a chunk per partition, then a SIGKILL once it is at work
            if i == 200:
                workers[2].start()  # a rebalance: tasks move with their timers mid-run
            mark = _written(kafka_bootstrap, names.out)
            for p, events in data.items():
                _produce(kafka_bootstrap, names.src, p, events[i : i + 50])
            if i // 50 % 2 == 0:
                wait_for(
                    lambda at=mark: _written(kafka_bootstrap, names.out) > at,
                    120,
                    "outputs of the chunk (a liveness bound)",
                    interval=0.1,
                )
                victim = rng.choice([w for w in workers if w.starts])
                victim.kill()
                victim.start()
        wait_for(
            lambda: _table_loaded(kafka_bootstrap, names.app_id, names.src), 120, "the input"
        )
        reminders = sum(kind == "remind" for events in data.values() for kind, *_ in events)

        def outputs() -> list[dict[str, object]]:
            records = read_committed(kafka_bootstrap, names.out)
            return [{**json.loads(r.value), "p": r.partition} for r in records]

        wait_for(
            lambda: sum(o["what"] == "remind" for o in outputs()) >= reminders,
            120,
            "every reminder (a liveness bound)",
            interval=0.5,
        )
        for w in workers:
            assert w.terminate() == 0, w.log()[-3000:]
        assert "restoring store orders-timers" in "".join(w.log() for w in workers)
        got = outputs()
    finally:
        for w in workers:
            w.stop_quietly()

    for p, events in data.items():
        want = fired(events, TIMEOUT_MS, EVERY_MS, AT_MS)
        mine = [o for o in got if o["p"] == p]
        stream = [(o["what"], o["key"], o["t"]) for o in mine if o["what"] != "remind"]
        assert stream == want, f"partition {p}: {len(stream)} firings, {len(want)} wanted"
        assert [o["n"] for o in mine if o["what"] != "remind"] == list(range(1, len(want) + 1))
        remind = [o for o in mine if o["what"] == "remind"]
        keys = sorted(k for kind, k, _ in events if kind == "remind")
        assert sorted(str(o["key"]) for o in remind) == keys  # each once
        assert sorted(int(str(o["n"])) for o in remind) == list(range(1, len(keys) + 1))
