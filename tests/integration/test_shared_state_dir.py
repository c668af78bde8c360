"""Workers sharing a state directory: a task whose store's files another worker still holds.

Two workers on one machine (``--processes N``, or two ``eokafka run`` on one disk) share the
state directory, and a RocksDB store allows one open handle. A task can move to a worker
before the one it leaves has closed its copy: the new owner must wait for the files, not
fail. Here the old owner is SIGSTOPped while it holds them, so the wait is certain.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.integration.harness import app_topics, wait_for, worker
from tests.kafka_helpers import produce_records, read_committed

pytestmark = pytest.mark.integration
TOTALS = "tests.apps.totals:app"
KEYS = 10
SESSION = ["-c", "consumer.session.timeout.ms=6000"]  # the broker's minimum


def _inputs(ids: range) -> list[tuple[bytes, bytes]]:
    return [(f"k{n % KEYS}".encode(), json.dumps({"id": n, "amount": n}).encode()) for n in ids]


def test_a_store_still_held_by_the_worker_it_left_is_waited_for_not_fatal(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    names = app_topics(kafka_bootstrap, "lock", 2)
    env = {**names.env, "TEST_BACKEND": "rocksdb"}
    produce_records(kafka_bootstrap, names.src, _inputs(range(1_000)))
    a = worker(TOTALS, kafka_bootstrap, tmp_path, "a", env, ["--instance-id", "a", *SESSION])
    b = worker(TOTALS, kafka_bootstrap, tmp_path, "b", env, ["--instance-id", "b", *SESSION])
    a.start()
    try:
        read_committed(kafka_bootstrap, names.out, expected_count=1_000, timeout=120)
        assert a.proc is not None
        os.kill(a.proc.pid, signal.SIGSTOP)  # holds its stores' LOCK files from now on
        b.start()  # same state directory: the harness gives every worker tmp/state
        # a's session ends, b gets both partitions and finds their stores locked by a.
        waiting = "held by another process"
        wait_for(lambda: waiting in b.log() or not b.alive, 120, "b to wait for a's files")
        assert b.alive, f"b stopped instead of waiting: {b.log()[-3000:]}"
        a.kill()  # the files are free once a is gone
        produce_records(kafka_bootstrap, names.src, _inputs(range(1_000, 2_000)))
        out = read_committed(kafka_bootstrap, names.out, expected_count=2_000, timeout=120)
        assert b.terminate() == 0, b.log()[-3000:]
    finally:
        a.stop_quietly()
        b.stop_quietly()
    ids = sorted(json.loads(r.value)["id"] for r in out)
    assert ids == list(range(2_000)), f"{len(ids)} outputs, {len(set(ids))} distinct ids"
    last = {r.key.decode(): json.loads(r.value)["total"] for r in out}
    assert last == {f"k{k}": sum(range(k, 2_000, KEYS)) for k in range(KEYS)}
