"""Standby replicas: a warm copy on the other worker turns a failover into a tail restore.

Two real workers run the running-totals app with ``--num-standby-replicas 1`` over 200,000
keys; once each keeps a caught-up standby of the other's partitions, one is SIGKILLed for good.
The survivor takes its partitions over after the session timeout and restores only what the
changelogs got after its standbys' positions: ``eokafka_records_restored_total`` of those
partitions stays far below their key count, and every input's total is emitted exactly once.
With three workers, then two, every partition has one caught-up standby, never on its owner.
"""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import pytest

from tests.integration.harness import WorkerProcess, app_topics, wait_for, worker
from tests.integration.test_operations import _free_port, _samples
from tests.kafka_helpers import end_offsets, produce_records, read_committed
from tests.totals_reference import check_running_totals

pytestmark = pytest.mark.integration
TARGET = "tests.apps.totals:app"
KEYS = 200_000
TAIL = 5_000
PARTITIONS = 4
REPLICAS = 1


def _inputs(ids: range, keys: int, seed: int) -> list[tuple[bytes, bytes]]:
    """One record per id; ids below ``keys`` each get a key of their own, later ones reuse them."""
    rng = random.Random(seed)
    return [
        (
            f"k{n if n < keys else rng.randrange(keys)}".encode(),
            json.dumps({"id": n, "amount": rng.randint(1, 9)}).encode(),
        )
        for n in ids
    ]


def _by_partition(port: int, name: str, **labels: str) -> dict[int, float]:
    """A metric's samples on one worker, by partition label (those matching ``labels``)."""
    out: dict[int, float] = {}
    for (sample, items), value in _samples(port).items():
        got = dict(items)
        if sample == name and all(got.get(k) == v for k, v in labels.items()):
            out[int(got["partition"])] = out.get(int(got["partition"]), 0.0) + value
    return out


def _workers(
    bootstrap: str, tmp: Path, env: dict[str, str], count: int
) -> tuple[list[WorkerProcess], list[int]]:
    ports = [_free_port() for _ in range(count)]
    workers = [
        worker(
            TARGET, bootstrap, tmp, f"w{i}", env,
            [
                "--instance-id", f"w{i}", "--metrics-port", str(ports[i]),
                "--num-standby-replicas", str(REPLICAS),
                # the broker's group.min.session.timeout.ms is 6 s: a dead member's
                # partitions move after that instead of the default 45 s
                "-c", "consumer.session.timeout.ms=6000",
            ],
        )  # fmt: skip
        for i in range(count)
    ]
    return workers, ports


def _owned(w: WorkerProcess) -> set[int]:
    """The partitions of the worker's last assignment, from its log."""
    lines = [line for line in w.log().splitlines() if "eokafka.worker: assigned " in line]
    last = lines[-1].split("assigned ", 1)[1] if lines else ""
    return {int(p) for p in re.findall(r"\[(\d+)\]", last)}


def test_a_failover_to_a_standby_restores_only_the_tail(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    names = app_topics(kafka_bootstrap, "standby", PARTITIONS)
    workers, ports = _workers(kafka_bootstrap, tmp_path, names.env, 2)
    out_count = lambda: sum(end_offsets(kafka_bootstrap, names.out).values())  # noqa: E731
    lag = lambda i: _by_partition(ports[i], "eokafka_consumer_lag", topic=names.src)  # noqa: E731
    standby = lambda i: _by_partition(ports[i], "eokafka_standby_lag")  # noqa: E731
    restored = lambda i: _by_partition(ports[i], "eokafka_records_restored_total")  # noqa: E731
    try:
        workers[0].start()
        wait_for(lambda: f"assigned {names.src}[" in workers[0].log(), 120, "w0's assignment")
        workers[1].start()
        wait_for(lambda: f"assigned {names.src}[" in workers[1].log(), 120, "w1's assignment")
        wait_for(  # w0 got its share back after w1 joined: no more moves before the input
            lambda: workers[0].log().count(f"assigned {names.src}[") >= 2, 120, "w0's share"
        )
        first = _inputs(range(KEYS), KEYS, seed=1)
        produce_records(kafka_bootstrap, names.src, first)
        wait_for(lambda: out_count() >= KEYS, 300, f"{KEYS} outputs", interval=0.5)
        wait_for(lambda: len(lag(0)) + len(lag(1)) == PARTITIONS, 60, "both workers' lag")
        victim_parts, survivor_parts = set(lag(0)), set(lag(1))
        assert victim_parts and survivor_parts, (victim_parts, survivor_parts)
        if REPLICAS:

            def caught_up() -> bool:
                kept = standby(1)
                return set(kept) == victim_parts and not any(kept.values())

            wait_for(caught_up, 180, "w1's standbys of w0's partitions at lag 0", interval=0.5)
            assert set(standby(0)) == survivor_parts  # never on its owner
        # Standby tailing is no restore: nothing was restored on either worker so far.
        assert not any(restored(0).values()) and not any(restored(1).values())
        tail = _inputs(range(KEYS, KEYS + TAIL), KEYS, seed=2)
        produce_records(kafka_bootstrap, names.src, tail)  # w0 may die before it is done
        workers[0].kill()  # for good: it never comes back
        killed = time.monotonic()
        later = _inputs(range(KEYS + TAIL, KEYS + 2 * TAIL), KEYS, seed=3)
        produce_records(kafka_bootstrap, names.src, later)
        everything = first + tail + later
        wait_for(lambda: out_count() >= len(everything), 180, "every output", interval=0.2)
        print(
            f"failover: every output committed {time.monotonic() - killed:.1f}s after the "
            "SIGKILL of w0 (session.timeout.ms=6000)"
        )
        last = [line for line in workers[1].log().splitlines() if "assigned" in line][-1]
        assert all(f"{names.src}[{p}]" in last for p in range(PARTITIONS)), last  # w1 has all
        after = restored(1)
        taken = sum(after.get(p, 0.0) for p in victim_parts)
        keys_there = KEYS * len(victim_parts) / PARTITIONS
        print(f"restored on takeover: {taken:.0f} changelog records for ~{keys_there:.0f} keys")
        assert taken < keys_there / 10, f"restored {taken} records, ~{keys_there} keys there"
        assert "promoted to active at changelog checkpoint" in workers[1].log()
        records = read_committed(kafka_bootstrap, names.out, len(everything), timeout=180)
        check_running_totals(everything, records)
        assert workers[1].terminate() == 0, workers[1].log()[-3000:]
    finally:
        for w in workers:
            w.stop_quietly()


def test_standbys_cover_each_partition_once_never_on_its_owner_as_members_go(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    partitions = 6
    names = app_topics(kafka_bootstrap, "standby3", partitions)
    workers, ports = _workers(kafka_bootstrap, tmp_path, names.env, 3)

    seen: dict[str, object] = {}

    def placed(alive: list[int]) -> bool:
        owned = {i: _owned(workers[i]) for i in alive}
        kept = {i: _by_partition(ports[i], "eokafka_standby_lag") for i in alive}
        seen.update(owned=owned, kept=kept)
        if sorted(p for parts in owned.values() for p in parts) != list(range(partitions)):
            return False
        hosts = sorted(p for parts in kept.values() for p in parts)
        return (
            hosts == list(range(partitions))  # one standby per partition
            and all(not set(kept[i]) & owned[i] for i in alive)  # never on its owner
            and not any(v for lags in kept.values() for v in lags.values())  # caught up
        )

    def until_placed(alive: list[int]) -> None:
        try:
            wait_for(lambda: placed(alive), 180, f"one standby per partition on {alive}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen {seen}") from None

    try:
        for w in workers:
            w.start()
        produce_records(kafka_bootstrap, names.src, _inputs(range(6_000), 500, seed=4))
        out_count = lambda: sum(end_offsets(kafka_bootstrap, names.out).values())  # noqa: E731
        wait_for(lambda: out_count() >= 6_000, 180, "the outputs", interval=0.5)
        until_placed([0, 1, 2])
        assert workers[2].terminate() == 0, workers[2].log()[-3000:]
        until_placed([0, 1])  # after w2's session timed out: its partitions moved
        for w in workers[:2]:
            assert w.terminate() == 0, w.log()[-3000:]
    finally:
        for w in workers:
            w.stop_quietly()
