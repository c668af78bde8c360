"""A rebalance storm on a stateful app: state survives, totals stay exact.

Six input partitions, 200,000 keys of count-by-key state (the in-memory store, the default),
input flowing all the time, workers scaled 1 -> 2 -> 3 -> 2 -> 1; at three workers one is
SIGKILLed and restarted at once with the same instance id (a crash and restart, as a
supervisor would do it; under classic static membership that is no rebalance, under the
consumer protocol the broker admits the new process once the old one's session has
expired). A partition that stays on a running worker across a change must restore nothing.
The pause of each change is printed: per partition, the longest wait from sending an input
to its output being written (LogAppendTime), and the longest gap between two outputs. Run
with ``-s`` to see it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.membership import (
    PROTOCOLS,
    Feeder,
    Member,
    Snapshot,
    check_counts,
    create_topics,
    describe,
    longest_gaps,
    longest_waits,
    members,
    no_open_transactions,
    one_per_key,
    restores_of_kept_partitions,
    settle,
    snapshot,
    stop,
)
from tests.kafka_helpers import read_committed, unique_name

pytestmark = pytest.mark.integration
PARTITIONS = 6
KEYS = 200_000
RATE = 1_000  # inputs/s while members change
STORE = "totals"


# cooperative-sticky keeps co-partitioning only for one input topic, as here.
STORM_PROTOCOLS = {
    **PROTOCOLS,
    "cooperative": [
        *PROTOCOLS["classic"],
        "-c",
        "consumer.partition.assignment.strategy=cooperative-sticky",
    ],
}


@pytest.mark.parametrize("protocol", sorted(STORM_PROTOCOLS))
def test_a_rebalance_storm_keeps_state_and_totals_exact(
    kafka_bootstrap: str, tmp_path: Path, protocol: str
) -> None:
    app_id, src, out = unique_name("storm"), unique_name("storm-in"), unique_name("storm-out")
    create_topics(kafka_bootstrap, [src, out], PARTITIONS)
    env = {"TEST_APP_ID": app_id, "TEST_INPUT": src, "TEST_OUTPUT": out}
    everyone = members(
        kafka_bootstrap, tmp_path, env, src, ["w0", "w1", "w2"], STORM_PROTOCOLS[protocol]
    )
    w0, w1, w2 = everyone
    inputs = one_per_key(kafka_bootstrap, [src], KEYS, PARTITIONS)
    feeder = Feeder(inputs, KEYS, RATE)
    changes: list[tuple[str, Snapshot, Snapshot]] = []
    live: list[Member] = []

    def change(name: str, action: Callable[[], object], now: list[Member]) -> None:
        before = snapshot(live, STORE)
        action()
        live[:] = now
        settle(kafka_bootstrap, app_id, src, live, PARTITIONS, name)
        changes.append((name, before, snapshot(live, STORE)))

    try:
        w0.start()
        live.append(w0)
        settle(kafka_bootstrap, app_id, src, live, PARTITIONS, "the first worker's start")
        feeder.start()
        change("1 -> 2", w1.start, [w0, w1])
        change("2 -> 3", w2.start, [w0, w1, w2])
        change("SIGKILL w1, restart", lambda: (w1.proc.kill(), w1.start()), [w0, w1, w2])
        change("3 -> 2", lambda: stop(w2), [w0, w1])
        change("2 -> 1", lambda: stop(w1), [w0])
        feeder.stop()
        settle(kafka_bootstrap, app_id, src, live, PARTITIONS, "the last inputs")
        stop(w0)

        records = read_committed(kafka_bootstrap, out, len(inputs.sent), timeout=180)
        print(f"\n{protocol}: {KEYS} keys, {len(inputs.sent)} inputs, {len(records)} outputs")
        for name, before, after in changes:
            t0, t1 = before.wall, after.wall
            waits = longest_waits(records, inputs, t0, t1)
            gaps = longest_gaps(records, inputs.partition_of, PARTITIONS, t0, t1)
            print(
                f"  {name}: pause {max(waits.values()):.2f}s (longest input-to-output wait per "
                f"partition: {describe(waits)}; longest gap between outputs: {describe(gaps)}); "
                f"settled in {t1 - t0:.1f}s"
            )
        check_counts(inputs, records)
        no_open_transactions(kafka_bootstrap, [out, f"{app_id}-{STORE}-changelog"])
        problems = [
            p
            for name, before, after in changes
            for p in restores_of_kept_partitions(before, after, everyone, STORE, name)
        ]
        assert not problems, "partitions that stayed were restored:\n" + "\n".join(problems)
    finally:
        feeder.done.set()
        for m in everyone:
            m.proc.stop_quietly()
