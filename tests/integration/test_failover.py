"""Failover of a stateful app: to a warm standby when the owner is gone for good, and back to
the same instance when it is restarted at once.

The classic protocol runs with the broker's minimum session timeout (6 s here,
group.min.session.timeout.ms): a SIGKILLed worker sends no LeaveGroup, so the group notices
it only when its session expires (a clean stop's early leave does not apply).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.harness import wait_for
from tests.integration.membership import (
    PROTOCOLS,
    Feeder,
    Member,
    check_counts,
    create_topics,
    first_commit_after,
    members,
    no_open_transactions,
    one_per_key,
    rebalance_lines,
    settle,
    stop,
)
from tests.integration.test_operations import _samples
from tests.kafka_helpers import end_offsets, read_committed, unique_name

pytestmark = pytest.mark.integration
PARTITIONS = 6
STORE = "totals"
# A million keys (a store of ~167,000 keys per partition) keeps this test under ~3 minutes on
# a loaded 2-core machine while a full restore stays far above the tail a standby leaves.
FAILOVER_KEYS = 1_000_000
SESSION_MS = 6_000
HEARTBEAT_MS = 500
# A liveness bound, not a performance figure: the moved partitions' output must come back at
# all. How fast it comes back is measured by benchmarks/rebalance.py (failover under classic
# 3.6 to 6.7 s in docs/benchmarks/rebalance.txt) and benchmarks/restart_latency.py.
LIVENESS_S = 120


def _topics(bootstrap: str, prefix: str) -> tuple[str, str, str]:
    app_id, src, out = (
        unique_name(prefix),
        unique_name(f"{prefix}-in"),
        unique_name(f"{prefix}-out"),
    )
    create_topics(bootstrap, [src, out], PARTITIONS)
    return app_id, src, out


def _standbys_caught_up(live: list[Member]) -> list[str]:
    """Partitions without a warm copy at lag 0 on a worker that does not own them."""
    behind = []
    for p in range(PARTITIONS):
        lags = {}
        for m in live:
            m.check_alive()
            if p not in m.owned():
                lags[m.name] = m.metric("eokafka_standby_lag", store=STORE).get(p)
        if 0 not in lags.values():
            behind.append(f"{STORE}[{p}] standby lag {lags}")
    return behind


def test_failover_to_a_standby_restores_only_the_tail(kafka_bootstrap: str, tmp_path: Path) -> None:
    app_id, src, out = _topics(kafka_bootstrap, "failover")
    env = {"TEST_APP_ID": app_id, "TEST_INPUT": src, "TEST_OUTPUT": out, "TEST_STANDBYS": "1"}
    # Heartbeats every 0.5 s: the survivor hears of the rebalance soon after the session ends.
    extra = [
        "-c",
        f"consumer.session.timeout.ms={SESSION_MS}",
        "-c",
        f"consumer.heartbeat.interval.ms={HEARTBEAT_MS}",
    ]
    survivor, victim = members(kafka_bootstrap, tmp_path, env, src, ["w0", "w1"], extra)
    inputs = one_per_key(kafka_bootstrap, [src], FAILOVER_KEYS, PARTITIONS)
    feeder = Feeder(inputs, FAILOVER_KEYS, 500)
    try:
        survivor.start()
        victim.start()
        settle(kafka_bootstrap, app_id, src, [survivor, victim], PARTITIONS, "two workers")
        wait_for(
            lambda: not _standbys_caught_up([survivor, victim]),
            300,
            "every partition's standby at lag 0",
            interval=0.5,
        )
        feeder.start()
        taken = victim.owned()
        assert taken, f"{victim.name} owns nothing: {victim.proc.log()[-2000:]}"
        changelog = f"{app_id}-{STORE}-changelog"
        sizes = end_offsets(kafka_bootstrap, changelog, "uncommitted")
        before = survivor.restored(STORE)
        killed = time.monotonic()
        victim.proc.kill()
        took = first_commit_after(kafka_bootstrap, app_id, src, taken, killed, LIVENESS_S)
        print(
            f"\nfailover: {FAILOVER_KEYS} keys, first committed output of partitions "
            f"{sorted(taken)} on {survivor.name} {took:.2f}s after the SIGKILL "
            f"(session.timeout.ms={SESSION_MS}, heartbeat.interval.ms={HEARTBEAT_MS})"
        )
        restored = {p: survivor.restored(STORE).get(p, 0) - before.get(p, 0) for p in taken}
        print(f"restored on take-over: {restored} of changelogs {sizes}")
        feeder.stop()
        settle(kafka_bootstrap, app_id, src, [survivor], PARTITIONS, "the last inputs")
        stop(survivor)
        records = read_committed(kafka_bootstrap, out, len(inputs.sent), timeout=300)
        check_counts(inputs, records)
        no_open_transactions(kafka_bootstrap, [out, changelog])
        full = {p: int(n) for p, n in restored.items() if n > sizes[p] // 100}
        assert not full, (
            f"{survivor.name} took over {STORE} partitions and restored more than a tail "
            f"(records restored vs changelog size): "
            f"{ {p: (n, sizes[p]) for p, n in full.items()} }"
        )
    finally:
        feeder.done.set()
        survivor.proc.stop_quietly()
        victim.proc.stop_quietly()


def _rebalances(m: Member) -> dict[str, float]:
    return {
        dict(labels)["event"]: v
        for (name, labels), v in _samples(m.port).items()
        if name == "eokafka_rebalances_total"
    }


def test_a_restart_after_sigkill_with_the_same_instance_id_is_no_rebalance(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Classic protocol only: under the consumer protocol (KIP-848) the broker refuses a new
    member with the instance id of one that did not leave (UNRELEASED_INSTANCE_ID, fatal in
    librdkafka) until that member's session expires, so a restart there waits the broker's
    session timeout; the rebalance storm covers that case for exactness."""
    protocol = "classic"
    app_id, src, out = _topics(kafka_bootstrap, "restart")
    env = {"TEST_APP_ID": app_id, "TEST_INPUT": src, "TEST_OUTPUT": out}
    other, victim = members(kafka_bootstrap, tmp_path, env, src, ["w0", "w1"], PROTOCOLS[protocol])
    keys = 20_000
    inputs = one_per_key(kafka_bootstrap, [src], keys, PARTITIONS)
    feeder = Feeder(inputs, keys, 500)
    try:
        other.start()
        victim.start()
        settle(kafka_bootstrap, app_id, src, [other, victim], PARTITIONS, "two workers")
        feeder.start()
        settle(kafka_bootstrap, app_id, src, [other, victim], PARTITIONS, "input flowing")
        owned = victim.owned()
        mark, events = len(other.current_log()), _rebalances(other)
        victim.proc.kill()
        restarted = time.monotonic()
        victim.start()
        took = first_commit_after(kafka_bootstrap, app_id, src, owned, restarted, LIVENESS_S)
        print(
            f"\n{protocol}: restart after SIGKILL, first committed output of {sorted(owned)} "
            f"{took:.2f}s after the new process started"
        )
        settle(kafka_bootstrap, app_id, src, [other, victim], PARTITIONS, "the restart")
        feeder.stop()
        settle(kafka_bootstrap, app_id, src, [other, victim], PARTITIONS, "the last inputs")
        moves = rebalance_lines(other.current_log()[mark:])
        assert not moves, f"{other.name} saw a rebalance for the restart: {moves}"
        assert _rebalances(other) == events, (
            f"{other.name}'s eokafka_rebalances_total moved: {events} -> {_rebalances(other)}"
        )
        assert victim.owned() == owned, f"{victim.name} came back with {victim.owned()}"
        stop(victim)
        stop(other)
        records = read_committed(kafka_bootstrap, out, len(inputs.sent), timeout=180)
        check_counts(inputs, records)
        no_open_transactions(kafka_bootstrap, [out, f"{app_id}-{STORE}-changelog"])
    finally:
        feeder.done.set()
        other.proc.stop_quietly()
        victim.proc.stop_quietly()
