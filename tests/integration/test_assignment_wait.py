"""An assignment whose committed offsets a stalled previous owner holds, on a real broker.

The previous owner is frozen (SIGSTOP, from its own fault point) right after it put its
consumed offsets into its open transaction and before it asked for the commit. Its
transaction timeout is long (60 s, longer than any single request timeout of the worker):
the group coordinator answers the new owner's offset fetch only once the broker has aborted
that transaction. The new owner must wait for that, keep serving its group meanwhile, and
then go on exactly once; the frozen worker, continued, must not break that either.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.harness import app_topics, wait_for, worker
from tests.kafka_helpers import produce_records, read_committed

pytestmark = pytest.mark.integration
TARGET = "tests.apps.eos_copy:app"
TXN_TIMEOUT_MS = 60_000
# Liveness bound, many times what the protocol needs (the transaction timeout plus a
# rebalance): the broker aborts the frozen owner's transaction 60 s after it began.
PATIENCE_S = 240


def _inputs(ids: range) -> list[tuple[bytes, bytes]]:
    return [(str(n).encode(), json.dumps({"id": n, "pad": "x" * 40}).encode()) for n in ids]


def test_a_new_owner_waits_for_a_stalled_owners_open_offsets_and_stays_exactly_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    names = app_topics(kafka_bootstrap, "await", 2)
    total = 4_000
    produce_records(kafka_bootstrap, names.src, _inputs(range(total)))
    flag = tmp_path / "stopped"
    common = [
        "--transaction-timeout-ms", str(TXN_TIMEOUT_MS),
        "-c", "consumer.session.timeout.ms=6000",  # the frozen owner leaves the group soon
        "-c", "consumer.heartbeat.interval.ms=1000",
    ]  # fmt: skip
    frozen_env = {
        **names.env,
        "EOKAFKA_TEST_CRASH_AT": "commit.offsets-sent:3",
        "EOKAFKA_TEST_CRASH_SIGNAL": "STOP",
        "EOKAFKA_TEST_CRASH_FLAG": str(flag),
        "EOKAFKA_COMMIT_EVERY": "200",  # the third commit holds offsets, whatever the batches
    }
    old = worker(TARGET, kafka_bootstrap, tmp_path, "old", frozen_env,
                 ["--instance-id", "old", *common]).start()  # fmt: skip
    new = None
    try:
        wait_for(flag.exists, 120, "the old owner to freeze with its offsets in its transaction")
        new = worker(TARGET, kafka_bootstrap, tmp_path, "new", names.env,
                     ["--instance-id", "new", *common]).start()  # fmt: skip
        # The path under test: the new owner is assigned the partitions and its offset
        # fetch is held by the frozen transaction, so it retries from its loop.
        wait_for(
            lambda: "assigned: reading the committed offsets" in new.log(),
            120,
            "the new owner to wait for the held offsets",
        )
        assert new.alive, new.log()[-3000:]
        records = read_committed(
            kafka_bootstrap, names.out, expected_count=2 * total, timeout=PATIENCE_S
        )
        assert new.alive, new.log()[-3000:]
        assert old.proc is not None
        old.proc.send_signal(signal.SIGCONT)  # the zombie goes on: it must change nothing
        more = _inputs(range(total, total + 500))
        produce_records(kafka_bootstrap, names.src, more)
        records = read_committed(
            kafka_bootstrap, names.out, expected_count=2 * (total + 500), timeout=PATIENCE_S
        )
        seen = Counter((json.loads(r.value)["id"], json.loads(r.value)["copy"]) for r in records)
        expected = {(n, c) for n in range(total + 500) for c in (0, 1)}
        assert set(seen) == expected, f"missing {sorted(expected - set(seen))[:5]}"
        dupes = [k for k, c in seen.items() if c > 1]
        assert not dupes, f"{len(dupes)} outputs duplicated, e.g. {dupes[:5]}"
        for w in (new, old):
            assert w.alive, w.log()[-3000:]
            assert w.terminate(60) == 0, w.log()[-3000:]
    finally:
        if old.proc is not None and old.alive:
            old.proc.send_signal(signal.SIGCONT)
        old.stop_quietly()
        if new is not None:
            new.stop_quietly()
