"""Topologies with co-partitioned inputs under scale 1 -> 2 -> 1: a stream-table join and one
store fed by two topics stay exact under each group protocol; cooperative-sticky, which does
not keep co-partitioned topics together, is refused for them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.integration.harness import wait_for, worker
from tests.integration.membership import (
    PROTOCOLS,
    Feeder,
    Member,
    Snapshot,
    check_counts,
    create_topics,
    members,
    no_open_transactions,
    one_per_key,
    restores_of_kept_partitions,
    settle,
    snapshot,
    stop,
)
from tests.kafka_helpers import produce_records, read_committed, unique_name

pytestmark = pytest.mark.integration
PARTITIONS = 6
JOINS = "tests.apps.dsl_apps:joins"
MULTI = "tests.apps.multi_topic:app"


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_a_co_partitioned_join_is_exact_through_scale_out_and_in(
    kafka_bootstrap: str, tmp_path: Path, protocol: str
) -> None:
    rng = random.Random(9)
    app_id = unique_name("cojoin")
    orders, table = unique_name("cojoin-in"), unique_name("cojoin-prices")
    out, out2 = unique_name("cojoin-out"), unique_name("cojoin-out2")
    create_topics(kafka_bootstrap, [orders, table, out, out2], PARTITIONS)
    env = {
        "TEST_APP_ID": app_id,
        "TEST_INPUT": orders,
        "TEST_TABLE": table,
        "TEST_OUTPUT": out,
        "TEST_OUTPUT2": out2,
    }
    w0, w1 = members(
        kafka_bootstrap, tmp_path, env, orders, ["w0", "w1"], PROTOCOLS[protocol], JOINS
    )
    products = [f"p{i}" for i in range(600)]
    prices = {p: rng.randint(1, 99) for i, p in enumerate(products) if i % 5}  # p0, p5.. none
    produce_records(
        kafka_bootstrap,
        table,
        [(p.encode(), json.dumps({"price": v}).encode()) for p, v in prices.items()],
    )
    sent: list[dict] = []

    def send(count: int) -> None:
        batch = [
            {"id": len(sent) + i, "product": rng.choice(products), "qty": rng.randint(1, 5)}
            for i in range(count)
        ]
        sent.extend(batch)
        produce_records(
            kafka_bootstrap,
            orders,
            [(o["product"].encode(), json.dumps(o).encode()) for o in batch],
        )

    def settled(live: list[Member], what: str) -> None:
        settle(kafka_bootstrap, app_id, orders, live, PARTITIONS, what, (table,))

    try:
        w0.start()
        settled([w0], "the table's load")  # orders before it would join a partial table
        send(3_000)
        settled([w0], "one worker")
        w1.start()  # 1 -> 2 with orders arriving meanwhile
        send(3_000)
        settled([w0, w1], "1 -> 2")
        stop(w1)  # 2 -> 1
        send(3_000)
        settled([w0], "2 -> 1")
        stop(w0)

        inner = read_committed(kafka_bootstrap, out, timeout=180)
        left = read_committed(kafka_bootstrap, out2, len(sent), timeout=180)
        want_inner = {
            o["id"]: o["qty"] * prices[o["product"]] for o in sent if o["product"] in prices
        }
        want_left = {o["id"]: (o["product"], prices.get(o["product"])) for o in sent}
        got_inner: dict[int, list[int]] = {}
        for r in inner:
            v = json.loads(r.value)
            got_inner.setdefault(v["id"], []).append(v["total"])
        got_left: dict[int, list[tuple[str, int | None]]] = {}
        for r in left:
            v = json.loads(r.value)
            got_left.setdefault(v["id"], []).append((r.key.decode(), v["price"]))
        twice = sorted(i for i, vs in {**got_inner, **got_left}.items() if len(vs) > 1)
        assert not twice, f"{len(twice)} orders joined more than once, e.g. {twice[:5]}"
        wrong_inner = {
            i: (got_inner.get(i, [None])[0], want)
            for i, want in want_inner.items()
            if got_inner.get(i, [None])[0] != want
        }
        extra_inner = sorted(set(got_inner) - set(want_inner))
        assert not wrong_inner and not extra_inner, (
            f"inner join: {len(wrong_inner)} orders wrong or missing (got, want), e.g. "
            f"{sorted(wrong_inner.items())[:5]}; {len(extra_inner)} joined without a price, "
            f"e.g. {extra_inner[:5]}"
        )
        wrong_left = {
            i: (got_left.get(i, [None])[0], want)
            for i, want in want_left.items()
            if got_left.get(i, [None])[0] != want
        }
        assert not wrong_left, (
            f"left join: {len(wrong_left)} orders wrong or missing (got, want), e.g. "
            f"{sorted(wrong_left.items())[:5]}"
        )
        no_open_transactions(kafka_bootstrap, [out, out2])
    finally:
        w0.proc.stop_quietly()
        w1.proc.stop_quietly()


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_a_store_fed_by_two_topics_is_exact_through_scale_out_and_in(
    kafka_bootstrap: str, tmp_path: Path, protocol: str
) -> None:
    app_id = unique_name("multi")
    src, src2, out = unique_name("multi-in"), unique_name("multi-in2"), unique_name("multi-out")
    create_topics(kafka_bootstrap, [src, src2, out], PARTITIONS)
    env = {"TEST_APP_ID": app_id, "TEST_INPUT": src, "TEST_INPUT2": src2, "TEST_OUTPUT": out}
    everyone = members(
        kafka_bootstrap, tmp_path, env, src, ["w0", "w1"], PROTOCOLS[protocol], MULTI
    )
    w0, w1 = everyone
    keys = 20_000
    inputs = one_per_key(kafka_bootstrap, [src, src2], keys, PARTITIONS)
    feeder = Feeder(inputs, keys, 500, (src, src2))
    changes: list[tuple[str, Snapshot, Snapshot]] = []

    def settled(live: list[Member], what: str) -> None:
        settle(kafka_bootstrap, app_id, src, live, PARTITIONS, what, (src2,))

    try:
        w0.start()
        settled([w0], "one worker")
        feeder.start()
        before = snapshot([w0], "totals")
        w1.start()
        settled([w0, w1], "1 -> 2")
        changes.append(("1 -> 2", before, snapshot([w0, w1], "totals")))
        before = changes[-1][2]
        stop(w1)
        settled([w0], "2 -> 1")
        changes.append(("2 -> 1", before, snapshot([w0], "totals")))
        feeder.stop()
        settled([w0], "the last inputs")
        stop(w0)
        records = read_committed(kafka_bootstrap, out, len(inputs.sent), timeout=180)
        check_counts(inputs, records)
        no_open_transactions(kafka_bootstrap, [out, f"{app_id}-totals-changelog"])
        problems = [
            p
            for name, b, a in changes
            for p in restores_of_kept_partitions(b, a, everyone, "totals", name)
        ]
        assert not problems, "partitions that stayed were restored:\n" + "\n".join(problems)
    finally:
        feeder.done.set()
        for m in everyone:
            m.proc.stop_quietly()


def test_cooperative_sticky_is_refused_for_co_partitioned_topics(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    app_id = unique_name("coop")
    src, src2, out = unique_name("coop-in"), unique_name("coop-in2"), unique_name("coop-out")
    create_topics(kafka_bootstrap, [src, src2, out], 2)
    env = {"TEST_APP_ID": app_id, "TEST_INPUT": src, "TEST_INPUT2": src2, "TEST_OUTPUT": out}
    strategy = "consumer.partition.assignment.strategy=cooperative-sticky"
    w = worker(MULTI, kafka_bootstrap, tmp_path, "w", env, ["-c", strategy]).start()
    try:
        try:
            wait_for(lambda: not w.alive, 90, f"the worker to refuse {strategy}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; it runs:\n{w.log()[-2000:]}") from None
        assert w.wait(1) != 0
        assert "partition.assignment.strategy" in w.log(), (
            f"the refusal does not name partition.assignment.strategy:\n{w.log()[-2000:]}"
        )
    finally:
        w.stop_quietly()
