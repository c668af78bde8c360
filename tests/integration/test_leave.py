"""Scale-in without a 45 s hole: a worker stopped on purpose leaves its group at once.

Real worker processes with static membership (the default) against a real broker. A
SIGTERMed worker's partitions are taken over by the other worker well within the session
timeout, for a stateless and a stateful app, with every input's output committed exactly
once. A SIGKILLed worker sends nothing: restarted with the same instance id, it takes its
partitions back without a rebalance of the other member; so does a SIGTERMed one with
``leave_group_on_stop`` off (a rolling restart). Under the consumer group protocol (KIP-848)
the leave, and the take-over from a crashed predecessor, are checked on librdkafka static
members configured like a worker's consumer. The hand-over times are printed; the
assertions only tell seconds from the session timeout, with a wide margin.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from eokafka.client_configs import consumer_config
from eokafka.config import Settings, resolve
from eokafka.devbroker import BrokerInfo
from eokafka.runtime.group.leave import leave_group, release_predecessor
from tests.integration.harness import (
    REPO,
    AppTopics,
    WorkerProcess,
    app_topics,
    wait_for,
    worker,
)
from tests.integration.test_operations import _free_port, _samples
from tests.integration.test_security import secured  # noqa: F401  (its own SASL_SSL broker)
from tests.kafka_helpers import _admin, produce_records, read_committed

pytestmark = pytest.mark.integration
COPY = "tests.apps.eos_copy:app"
TOTALS = "tests.apps.totals:app"
SESSION_S = 45.0  # session.timeout.ms of the classic protocol, the broker default under KIP-848
PARTITIONS = 4
BATCH = 400
KEYS = 40
ASSIGNS = ("eokafka_rebalances_total", (("event", "assign"),))


def _orders(start: int, n: int) -> list[tuple[bytes, bytes]]:
    return [
        (f"k{i % KEYS}".encode(), json.dumps({"id": i, "amount": i % 10 + 1}).encode())
        for i in range(start, start + n)
    ]


def _owners(bootstrap: str, group: str) -> dict[str, set[int]]:
    """Each member's instance id and the partitions the coordinator gave it."""
    admin = _admin(bootstrap)
    described = admin.describe_consumer_groups([group], request_timeout=10)[group].result(15)
    return {
        str(m.group_instance_id or m.member_id): {
            tp.partition for tp in (m.assignment.topic_partitions if m.assignment else [])
        }
        for m in described.members
    }


def _outputs_per_input(target: str, n: int) -> int:
    return 2 * n if target == COPY else n


def _check_exact(target: str, bootstrap: str, out: str, n: int) -> None:
    """Every one of the ``n`` inputs once in the committed output, with its exact value."""
    records = read_committed(bootstrap, out, expected_count=_outputs_per_input(target, n))
    values = [json.loads(r.value) for r in records]
    if target == COPY:
        assert sorted((v["id"], v["copy"]) for v in values) == [
            (i, c) for i in range(n) for c in (0, 1)
        ]
        return
    running: dict[bytes, int] = {}
    want: dict[int, int] = {}
    for key, raw in _orders(0, n):
        running[key] = running.get(key, 0) + json.loads(raw)["amount"]
        want[json.loads(raw)["id"]] = running[key]
    assert len(values) == n
    assert {v["id"]: v["total"] for v in values} == want


def _start_pair(
    target: str, bootstrap: str, tmp: Path, env: dict[str, str], extra: list[str]
) -> tuple[WorkerProcess, WorkerProcess]:
    pair = []
    for name in ("a", "b"):
        (tmp / name).mkdir()
        args = ["--instance-id", name, *extra]
        pair.append(worker(target, bootstrap, tmp / name, name, env, args).start())
    return pair[0], pair[1]


def _wait_both_own(bootstrap: str, group: str) -> dict[str, set[int]]:
    seen: dict[str, set[int]] = {}

    def both() -> bool:
        seen.clear()
        seen.update(_owners(bootstrap, group))
        union = set().union(*seen.values()) if seen else set()
        return set(seen) == {"a", "b"} and all(seen.values()) and union == set(range(PARTITIONS))

    wait_for(both, 120, "both workers to own partitions", interval=0.2)
    return dict(seen)


@pytest.mark.parametrize("target", [COPY, TOTALS], ids=["stateless", "stateful"])
def test_a_worker_stopped_on_purpose_hands_its_partitions_over_at_once(
    kafka_bootstrap: str, tmp_path: Path, target: str
) -> None:
    names = app_topics(kafka_bootstrap, "leave", PARTITIONS)
    produce_records(kafka_bootstrap, names.src, _orders(0, BATCH))
    a, b = _start_pair(target, kafka_bootstrap, tmp_path, names.env, [])
    try:
        moved = _wait_both_own(kafka_bootstrap, names.app_id)["b"]
        read_committed(kafka_bootstrap, names.out, _outputs_per_input(target, BATCH), 120)
        stopped = time.monotonic()
        assert b.terminate() == 0, b.log()[-3000:]
        produce_records(kafka_bootstrap, names.src, _orders(BATCH, BATCH))
        want = _outputs_per_input(target, 2 * BATCH)
        read_committed(kafka_bootstrap, names.out, expected_count=want, timeout=180)
        hand_over = time.monotonic() - stopped
        print(f"\nclassic protocol, {target}: partitions {sorted(moved)} handed over and their "
              f"outputs committed {hand_over:.2f}s after SIGTERM")  # fmt: skip
        assert "left group" in b.log(), b.log()[-3000:]
        assert hand_over < SESSION_S / 2, f"{hand_over:.1f}s: the session timeout's hole"
        assert _owners(kafka_bootstrap, names.app_id) == {"a": set(range(PARTITIONS))}
        _check_exact(target, kafka_bootstrap, names.out, 2 * BATCH)
        assert a.terminate() == 0, a.log()[-3000:]
        # The last worker leaves too: the group is empty at once (`eokafka reset` needs no wait).
        assert _owners(kafka_bootstrap, names.app_id) == {}
    finally:
        a.stop_quietly()
        b.stop_quietly()


def _kip848_group(bootstrap: str, prefix: str) -> tuple[AppTopics, Settings]:
    names = app_topics(bootstrap, prefix, PARTITIONS, create_output=False)
    config = {"group.protocol": "consumer"}
    settings = resolve(names.app_id, {"bootstrap_servers": bootstrap, "config": config}, env={})
    return names, settings


def _kip848_member(settings: Settings, instance_id: str, topic: str, **extra: Any) -> Consumer:
    """A static member of a ``group.protocol=consumer`` group, configured as a worker's."""
    conf = consumer_config(settings, instance_id)
    conf.pop("session.timeout.ms", None)  # broker-side under KIP-848
    conf.pop("logger", None)
    member = Consumer({**conf, **extra})
    member.subscribe([topic])
    return member


def _poll_until(
    members: list[Consumer], cond: Callable[[], bool], timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        for member in members:
            member.poll(0.05)


def test_a_kip848_static_member_leaves_for_good_after_close(kafka_bootstrap: str) -> None:
    """Under group.protocol=consumer librdkafka closes a static member with epoch -2, and the
    coordinator holds its partitions for the session timeout; leave_group ends that at once."""
    names, settings = _kip848_group(kafka_bootstrap, "leave848")
    a = _kip848_member(settings, "a", names.src)
    b = _kip848_member(settings, "b", names.src)
    everything = set(range(PARTITIONS))
    member_id: str | None = None

    def owned(member: Consumer) -> set[int]:
        return {tp.partition for tp in member.assignment()}

    try:
        _poll_until([a, b], lambda: bool(owned(a)) and owned(a) | owned(b) == everything
                    and not owned(a) & owned(b), 120, "both members to own partitions")  # fmt: skip
        moved = owned(b)
        member_id = b.memberid()
        b.close()
        stopped = time.monotonic()
        assert leave_group(settings, "b", member_id)
        _poll_until([a], lambda: owned(a) == everything, 120, "a to own every partition")
        hand_over = time.monotonic() - stopped
        print(f"\nconsumer protocol: partitions {sorted(moved)} reassigned {hand_over:.2f}s "
              "after the closed static member left")  # fmt: skip
        assert hand_over < SESSION_S / 2, f"{hand_over:.1f}s: the session timeout's hole"
        assert _owners(kafka_bootstrap, names.app_id).keys() == {"a"}
    finally:
        a.close()
        if member_id is None:
            b.close()


_CRASHING_MEMBER = """
import sys
from confluent_kafka import Consumer
from eokafka.client_configs import consumer_config
from eokafka.config import resolve
settings = resolve(sys.argv[1], {"bootstrap_servers": sys.argv[2],
                   "config": {"group.protocol": "consumer"}}, env={})
conf = consumer_config(settings, "b")
conf.pop("session.timeout.ms", None)
conf.pop("logger", None)
member = Consumer(conf)
member.subscribe([sys.argv[3]])
while True:
    member.poll(0.1)
"""


def test_a_kip848_static_member_restarted_after_a_crash_takes_over_without_a_rebalance(
    kafka_bootstrap: str,
) -> None:
    """The broker refuses a new member with a crashed one's instance id until the session
    timeout (UNRELEASED_INSTANCE_ID, fatal to librdkafka); release_predecessor lets the
    restart take over its assignment at once, and the other member is not rebalanced."""
    names, settings = _kip848_group(kafka_bootstrap, "crash848")
    a = _kip848_member(settings, "a", names.src)
    everything = set(range(PARTITIONS))
    crashing: subprocess.Popen[bytes] | None = None
    restarted: Consumer | None = None
    owners: dict[str, set[int]] = {}

    def settled() -> bool:
        owners.clear()
        owners.update(_owners(kafka_bootstrap, names.app_id))
        mine = {tp.partition for tp in a.assignment()}
        return owners.keys() == {"a", "b"} and all(owners.values()) and owners["a"] == mine and (
            owners["a"] | owners["b"] == everything)  # fmt: skip

    try:
        _poll_until([a], lambda: {tp.partition for tp in a.assignment()} == everything, 120,
                    "a to own every partition")  # fmt: skip
        crashing = subprocess.Popen(
            [sys.executable, "-c", _CRASHING_MEMBER, names.app_id, kafka_bootstrap, names.src],
            cwd=REPO, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        _poll_until([a], settled, 120, "the two members to share the partitions")
        crashed_owned, a_owned = owners["b"], owners["a"]
        crashing.kill()
        crashing.wait(30)
        started = time.monotonic()
        assert release_predecessor(settings, "b", _admin(kafka_bootstrap))
        fatal: list[str] = []
        member = _kip848_member(settings, "b", names.src, error_cb=lambda e: fatal.append(e.str()))
        restarted = member
        _poll_until([a, member], lambda: bool(member.assignment()) or bool(fatal), 120,
                    "the restarted member's assignment")  # fmt: skip
        back = time.monotonic() - started
        print(f"\nconsumer protocol: the restarted static member owned {sorted(crashed_owned)} "
              f"again {back:.2f}s after the crash")  # fmt: skip
        assert not fatal
        assert {tp.partition for tp in member.assignment()} == crashed_owned
        assert {tp.partition for tp in a.assignment()} == a_owned  # never moved
        assert back < SESSION_S / 2, f"{back:.1f}s: the restart waited for the session timeout"
    finally:
        if crashing is not None:
            crashing.kill()
            crashing.wait(30)
        a.close()
        if restarted is not None:
            restarted.close()


@pytest.mark.parametrize("stop", ["sigkill", "sigterm-keeping-membership"])
def test_a_restarted_static_member_takes_its_partitions_back_without_a_rebalance(
    kafka_bootstrap: str, tmp_path: Path, stop: str
) -> None:
    """A crash, or a rolling restart with leave_group_on_stop off: no rebalance of the other."""
    names = app_topics(kafka_bootstrap, "rejoin", PARTITIONS)
    port = _free_port()
    env = {**names.env, "EOKAFKA_LEAVE_GROUP_ON_STOP": "0" if stop != "sigkill" else "1"}
    produce_records(kafka_bootstrap, names.src, _orders(0, BATCH))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = worker(TOTALS, kafka_bootstrap, tmp_path / "a", "a", env,
               ["--instance-id", "a", "--metrics-port", str(port)]).start()  # fmt: skip
    b = worker(TOTALS, kafka_bootstrap, tmp_path / "b", "b", env, ["--instance-id", "b"]).start()
    try:
        owners = _wait_both_own(kafka_bootstrap, names.app_id)
        read_committed(kafka_bootstrap, names.out, expected_count=BATCH, timeout=120)
        wait_for(lambda: ASSIGNS in _samples(port), 30, "worker a's metrics", interval=0.2)
        assigns = _samples(port)[ASSIGNS]
        if stop == "sigkill":
            b.kill()
        else:
            assert b.terminate() == 0, b.log()[-3000:]
            assert "left group" not in b.log()
        restarted = time.monotonic()
        b.start()
        produce_records(kafka_bootstrap, names.src, _orders(BATCH, BATCH))
        read_committed(kafka_bootstrap, names.out, expected_count=2 * BATCH, timeout=180)
        back = time.monotonic() - restarted
        print(f"\n{stop}: worker b restarted; its partitions {sorted(owners['b'])} committed "
              f"output again {back:.2f}s later")  # fmt: skip
        assert _samples(port)[ASSIGNS] == assigns, "the restart rebalanced worker a"
        assert _owners(kafka_bootstrap, names.app_id) == owners
        assert back < SESSION_S / 2, f"{back:.1f}s: the restart waited for the session timeout"
        _check_exact(TOTALS, kafka_bootstrap, names.out, 2 * BATCH)
        assert a.terminate() == 0 and b.terminate() == 0
    finally:
        a.stop_quietly()
        b.stop_quietly()


def test_a_worker_stopped_over_sasl_ssl_leaves_its_group_at_once(
    secured: BrokerInfo,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    bootstrap = secured.bootstrap
    names = app_topics(bootstrap, "leave-sec", 2)
    produce_records(bootstrap, names.src, _orders(0, BATCH))
    flags = [arg for k, v in secured.client_config.items() for arg in ("--config", f"{k}={v}")]
    run = worker(COPY, bootstrap, tmp_path, "sec", names.env, ["--instance-id", "s", *flags])
    run.start()
    try:
        read_committed(bootstrap, names.out, expected_count=2 * BATCH, timeout=180)
        assert _owners(bootstrap, names.app_id).keys() == {"s"}
        assert run.terminate() == 0, run.log()[-3000:]
        assert _owners(bootstrap, names.app_id) == {}  # gone as the worker exits, not 45 s later
        assert "static member s left group" in run.log()
        assert secured.client_config["sasl.password"] not in run.log()
    finally:
        run.stop_quietly()
