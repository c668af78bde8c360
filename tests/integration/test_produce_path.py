"""Producing from the worker loop and at commit: a full local queue, the input's timestamp.

Most apps send one record per input; the worker produces those straight from its loop and
hands anything unusual (a full librdkafka queue, a refusal) to the general path; changelog
records go out at commit the same way. These runs force a full queue on both paths with
real worker processes and a real broker.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.integration.harness import app_topics, worker
from tests.kafka_helpers import produce_records, read_committed

pytestmark = pytest.mark.integration
TOTALS = "tests.apps.totals:app"
KEYS = 7


def test_a_full_local_queue_waits_and_keeps_every_output_once_with_its_input_timestamp(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    total = 3_000
    names = app_topics(kafka_bootstrap, "fullq", 2)
    inputs = [
        (f"k{n % KEYS}".encode(), json.dumps({"id": n, "amount": n}).encode())
        for n in range(total)
    ]
    base = int(time.time() * 1000) - 60_000  # within retention: older records get deleted
    stamps = [base + n for n in range(total)]
    produce_records(kafka_bootstrap, names.src, inputs, timestamps=stamps)
    # A queue of 4 messages fills at once: produce() raises BufferError on most records.
    extra = ["--until-end", "--config", "producer.queue.buffering.max.messages=4"]
    run = worker(TOTALS, kafka_bootstrap, tmp_path, "run", names.env, extra).start()
    try:
        assert run.wait(300) == 0, run.log()[-3000:]
    finally:
        run.stop_quietly()
    out = read_committed(kafka_bootstrap, names.out, expected_count=total)
    values = [json.loads(r.value) for r in out]
    ids = sorted(v["id"] for v in values)
    assert ids == list(range(total)), f"{len(ids)} outputs, {len(set(ids))} distinct ids"
    running: dict[str, int] = {}
    for n in range(total):  # per key, the inputs are in id order within their partition
        key = f"k{n % KEYS}"
        running[key] = running.get(key, 0) + n
    last = {r.key.decode(): json.loads(r.value)["total"] for r in out}
    assert last == running
    changelog = read_committed(kafka_bootstrap, f"{names.app_id}-totals-changelog")
    stored = {json.loads(r.key): json.loads(r.value) for r in changelog}  # last write wins
    assert stored == running
    wrong = [
        (r.value, r.timestamp) for r in out if r.timestamp != stamps[json.loads(r.value)["id"]]
    ]
    assert not wrong, f"{len(wrong)} outputs not stamped with their input's time, e.g. {wrong[:3]}"
