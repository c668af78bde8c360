"""Tasks keep their stores through rebalances, under each group protocol.

A second worker joins a stateful app while input flows. The first worker's tasks are
suspended on revoke, not closed: those it keeps (eager) or that never move (incremental)
restore nothing, which ``eokafka_records_restored_total`` of the first worker shows; totals
stay exact, read read_committed. Under incremental protocols only moved partitions are
revoked.
"""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict
from pathlib import Path

import pytest

from tests.integration.harness import app_topics, wait_for, worker
from tests.integration.membership import group_offsets
from tests.integration.test_exactly_once import _assert_exactly_once, _setup
from tests.integration.test_exactly_once import _inputs as _copy_inputs
from tests.integration.test_operations import _free_port, _samples
from tests.integration.test_stores import _inputs
from tests.kafka_helpers import create_topic, end_offsets, produce_records, read_committed
from tests.totals_reference import check_running_totals

pytestmark = pytest.mark.integration
PROTOCOLS = {
    "eager": [],
    "cooperative": ["-c", "consumer.partition.assignment.strategy=cooperative-sticky"],
    "consumer": ["-c", "consumer.group.protocol=consumer"],
}
PARTITIONS = 6
EOS_COPY = "tests.apps.eos_copy:app"


def _restored(port: int) -> float:
    return sum(v for k, v in _samples(port).items() if k[0] == "eokafka_records_restored_total")


def _revoked(log: str) -> list[set[str]]:
    """The partitions of each revoke the worker logged."""
    return [set(m.split(", ")) for m in re.findall(r"revoked (.+)", log) if m != "nothing"]


def _feed(bootstrap: str, topic: str, inputs: list, step: int = 500) -> threading.Thread:
    def run() -> None:
        for i in range(0, len(inputs), step):
            produce_records(bootstrap, topic, inputs[i : i + step])

    feeder = threading.Thread(target=run)
    feeder.start()
    return feeder


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_a_joining_worker_leaves_the_kept_stores_of_the_first_unrestored(
    kafka_bootstrap: str, tmp_path: Path, protocol: str
) -> None:
    total = 12_000
    names = app_topics(kafka_bootstrap, f"keep-{protocol}", PARTITIONS)
    inputs = _inputs(range(total), seed=3)
    ports = [_free_port() for _ in range(2)]
    workers = [
        worker(
            "tests.apps.totals:app",
            kafka_bootstrap,
            tmp_path,
            f"w{i}",
            names.env,
            ["--instance-id", f"w{i}", "--metrics-port", str(ports[i]), *PROTOCOLS[protocol]],
        )
        for i in range(2)
    ]
    out_count = lambda: sum(end_offsets(kafka_bootstrap, names.out).values())  # noqa: E731
    try:
        workers[0].start()
        feeder = _feed(kafka_bootstrap, names.src, inputs)
        wait_for(lambda: out_count() > 2_000, 120, "the first worker's output")
        workers[1].start()
        try:
            wait_for(lambda: "assigned" in workers[1].log() and "revoked" in workers[0].log(),
                     120, "a rebalance that moves partitions")  # fmt: skip
        except AssertionError as exc:  # which side never moved, and why
            tails = "\n".join(f"--- w{i}:\n{w.log()[-2500:]}" for i, w in enumerate(workers))
            raise AssertionError(f"{exc}\n{tails}") from None
        feeder.join(120)
        records = read_committed(kafka_bootstrap, names.out, expected_count=total, timeout=180)
        check_running_totals(inputs, records)
        assert _restored(ports[0]) == 0, workers[0].log()[-3000:]
        assert _restored(ports[1]) > 0, "the moved partitions' stores were not restored"
        revokes = _revoked(workers[0].log())
        if protocol == "eager":
            assert len(revokes[0]) == PARTITIONS
        else:  # only what moved: never the whole assignment
            assert revokes and all(len(r) < PARTITIONS for r in revokes), revokes
        for w in workers:
            assert w.terminate() == 0, w.log()[-3000:]
    finally:
        for w in workers:
            w.stop_quietly()


def test_a_store_over_two_topics_stays_exact_under_the_consumer_protocol(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    per_topic = 6_000
    names = app_topics(kafka_bootstrap, "copart", PARTITIONS)
    src2 = f"{names.src}-b"
    create_topic(kafka_bootstrap, src2, PARTITIONS)
    env = {**names.env, "TEST_INPUT2": src2}
    keys = [f"k{i}" for i in range(30)]

    def inputs(first: int) -> list[tuple[bytes, bytes]]:
        return [
            (keys[n % len(keys)].encode(), json.dumps({"id": n}).encode())
            for n in range(first, first + per_topic)
        ]

    a, b = inputs(0), inputs(per_topic)
    workers = [
        worker("tests.apps.copartitioned:app", kafka_bootstrap, tmp_path, f"w{i}", env,
               ["--instance-id", f"w{i}", *PROTOCOLS["consumer"]])  # fmt: skip
        for i in range(2)
    ]
    out_count = lambda: sum(end_offsets(kafka_bootstrap, names.out).values())  # noqa: E731
    try:
        half = per_topic // 2
        workers[0].start()
        feeders = [_feed(kafka_bootstrap, names.src, a[:half]),
                   _feed(kafka_bootstrap, src2, b[:half])]
        wait_for(lambda: out_count() > 1_000, 120, "the first worker's output")
        workers[1].start()
        # the second half is fed once the second worker has its share, so both count keys
        wait_for(lambda: "assigned" in workers[1].log(), 120, "the second worker's partitions")
        feeders += [_feed(kafka_bootstrap, names.src, a[half:]),
                    _feed(kafka_bootstrap, src2, b[half:])]
        for f in feeders:
            f.join(120)
        records = read_committed(
            kafka_bootstrap, names.out, expected_count=2 * per_topic, timeout=180
        )
        ids = [json.loads(r.value)["id"] for r in records]
        assert sorted(ids) == list(range(2 * per_topic)), "an input missing or twice"
        counts: dict[str, list[int]] = defaultdict(list)
        for r in records:
            counts[r.key.decode()].append(json.loads(r.value)["count"])
        for key, got in counts.items():  # counted once each, in one store per key
            assert sorted(got) == list(range(1, len(got) + 1)), (key, sorted(got)[:10])
        for w in workers:
            assert w.terminate() == 0, w.log()[-3000:]
    finally:
        for w in workers:
            w.stop_quietly()


def test_a_stale_members_commit_is_refused_under_the_consumer_protocol(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A worker stalls mid-transaction past max.poll.interval.ms: librdkafka leaves the group
    for it, and the group moves its partitions to another worker, which commits them all.
    When it wakes, its offsets carry a member the group no longer has, so the broker refuses
    its send_offsets_to_transaction and the transaction aborts: every input is still output
    exactly once. Its transaction timeout is a liveness bound far above the stall, so that
    what refuses the commit is the group, not the broker's transaction timeout."""
    total = 4_000
    env, src, out = _setup(kafka_bootstrap, tmp_path, partitions=2)
    env["TEST_PAUSE_IDS"] = "1500"
    pause_dir = Path(env["TEST_PAUSE_DIR"])
    produce_records(kafka_bootstrap, src, _copy_inputs(range(total)))
    extra = [*PROTOCOLS["consumer"], "-c", "consumer.max.poll.interval.ms=6000"]
    stale = worker(EOS_COPY, kafka_bootstrap, tmp_path, "stale", env,
                   ["--instance-id", "stale", *extra, "--transaction-timeout-ms", "300000"]
                   ).start()  # fmt: skip
    other = worker(EOS_COPY, kafka_bootstrap, tmp_path, "other", env,
                   ["--instance-id", "other", *extra])  # fmt: skip
    ends = end_offsets(kafka_bootstrap, src)
    try:
        wait_for(lambda: (pause_dir / "paused-1500").exists(), 120, "the worker to pause")
        other.start()  # takes every partition once the stale member has left
        wait_for(lambda: group_offsets(kafka_bootstrap, env["TEST_APP_ID"], src) == ends,
                 120, "the other worker to commit every input")  # fmt: skip
        (pause_dir / "release").touch()  # the stale member wakes inside its transaction
        wait_for(lambda: "lost" in stale.log() or not stale.alive, 60, "the stale worker")
        refused = re.search(
            r"aborting: send_offsets_to_transaction: "
            r"(UNKNOWN_MEMBER_ID|STALE_MEMBER_EPOCH|FENCED_MEMBER_EPOCH|ILLEGAL_GENERATION)",
            stale.log(),
        )
        assert refused, f"the stale member's commit was not refused:\n{stale.log()[-3000:]}"
        produce_records(kafka_bootstrap, src, _copy_inputs(range(total, total + 1_000)))
        records = read_committed(
            kafka_bootstrap, out, expected_count=2 * (total + 1_000), timeout=120
        )
        _assert_exactly_once(records, range(total + 1_000))
        assert other.alive, other.log()[-3000:]
        for w in (stale, other):
            if w.alive:
                assert w.terminate() == 0, w.log()[-3000:]
    finally:
        stale.stop_quietly()
        other.stop_quietly()
