"""Standby placement from the group membership (pure logic, no broker)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from confluent_kafka import TopicPartition

from eokafka.client_configs import standby_consumer_config
from eokafka.config import resolve
from eokafka.errors import ConfigError
from eokafka.runtime.group.placement import Member, members_of, standby_plan, standbys_of


def _group(owned: dict[str, set[int]]) -> list[Member]:
    return [Member(name, f"id-{name}", frozenset(parts)) for name, parts in owned.items()]


def _owners(members: list[Member]) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for m in members:
        for p in m.partitions:
            out.setdefault(p, set()).add(m.name)
    return out


@pytest.mark.parametrize("replicas", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_a_partition_standby_never_lives_on_its_owner(replicas: int, size: int) -> None:
    names = [f"w{i}" for i in range(size)]
    members = _group({n: {p for p in range(6) if p % size == i} for i, n in enumerate(names)})
    plan = standby_plan(members, replicas)
    assert set(plan) == set(range(6))
    for p, hosts in plan.items():
        assert not set(hosts) & _owners(members)[p]
        assert len(hosts) == len(set(hosts)) == min(replicas, size - 1)


def test_more_replicas_than_members_gives_each_other_member_one() -> None:
    members = _group({"a": {0, 1}, "b": {2}, "c": {3}})
    plan = standby_plan(members, 10)
    assert plan == {0: ("b", "c"), 1: ("b", "c"), 2: ("c", "a"), 3: ("a", "b")}


def test_the_plan_is_the_next_members_in_name_order_whatever_the_listing_order() -> None:
    members = _group({"w2": {2}, "w0": {0}, "w1": {1}})
    plan = standby_plan(members, 1)
    assert plan == {0: ("w1",), 1: ("w2",), 2: ("w0",)}
    assert standby_plan(list(reversed(members)), 1) == plan
    assert standbys_of(members, "id-w1", 1) == {0}
    assert standbys_of(reversed(members), "id-w1", 1) == {0}


def test_every_worker_keeps_its_share_and_the_shares_cover_the_plan() -> None:
    members = _group({"a": {0, 1}, "b": {2, 3}, "c": {4, 5}})
    shares = {m.name: standbys_of(members, m.member_id, 2) for m in members}
    assert shares == {"a": {2, 3, 4, 5}, "b": {0, 1, 4, 5}, "c": {0, 1, 2, 3}}


def test_members_joining_and_leaving_move_standbys_off_new_owners() -> None:
    alone = _group({"a": {0, 1, 2, 3}})
    assert standby_plan(alone, 1) == {0: (), 1: (), 2: (), 3: ()}
    assert standbys_of(alone, "id-a", 1) == set()
    pair = _group({"a": {0, 1}, "b": {2, 3}})
    assert standbys_of(pair, "id-a", 1) == {2, 3}
    assert standbys_of(pair, "id-b", 1) == {0, 1}
    trio = _group({"a": {0, 1}, "b": {2}, "c": {3}})
    assert standbys_of(trio, "id-a", 1) == {3}
    assert standbys_of(trio, "id-b", 1) == {0, 1}
    assert standbys_of(trio, "id-c", 1) == {2}
    survivor = _group({"b": {0, 1, 2, 3}})  # a and c left: b owns all, nowhere to put standbys
    assert standbys_of(survivor, "id-b", 1) == set()


def test_a_member_not_in_the_group_yet_gets_no_plan() -> None:
    assert standbys_of(_group({"a": {0}}), "id-someone-else", 1) is None


def test_a_partition_owned_twice_while_moving_has_no_standby_on_either_owner() -> None:
    members = _group({"a": {0}, "b": {0, 1}, "c": set()})
    assert standby_plan(members, 2)[0] == ("c",)


def _described(*members: SimpleNamespace) -> SimpleNamespace:
    return SimpleNamespace(members=list(members))


def _member(
    member_id: str, instance: str | None, client: str, tps: list[TopicPartition],
    target: list[TopicPartition] | None = None,
) -> SimpleNamespace:  # fmt: skip
    return SimpleNamespace(
        member_id=member_id,
        group_instance_id=instance,
        client_id=client,
        assignment=SimpleNamespace(topic_partitions=tps),
        target_assignment=None if target is None else SimpleNamespace(topic_partitions=target),
    )


def test_members_are_read_from_a_classic_and_a_consumer_protocol_description() -> None:
    classic = _described(
        _member("m1", "w1", "app-w1-consumer", [TopicPartition("in", 0), TopicPartition("x", 1)]),
        _member("m2", None, "app-w2-consumer", [TopicPartition("in", 1)]),
    )
    assert members_of(classic, ["in"]) == [
        Member("w1", "m1", frozenset({0})),
        Member("app-w2-consumer", "m2", frozenset({1})),
    ]
    moving = _described(  # KIP-848: the target assignment is where partitions are going
        _member("m1", "w1", "c1", [TopicPartition("in", 0)], [TopicPartition("in", 1)]),
    )
    assert members_of(moving, ["in"]) == [Member("w1", "m1", frozenset({1}))]


def test_num_standby_replicas_setting() -> None:
    assert resolve("a", {}, env={}).num_standby_replicas == 0
    assert resolve("a", {"num_standby_replicas": 1}, env={}).num_standby_replicas == 1
    env = {"EOKAFKA_NUM_STANDBY_REPLICAS": "2"}
    assert resolve("a", {"num_standby_replicas": 1}, env=env).num_standby_replicas == 2
    with pytest.raises(ConfigError, match="num_standby_replicas must be an integer of at least 0"):
        resolve("a", {"num_standby_replicas": -1}, env={})
    with pytest.raises(ConfigError, match="not an integer"):
        resolve("a", {}, env={"EOKAFKA_NUM_STANDBY_REPLICAS": "one"})
    conf = standby_consumer_config(resolve("a", {}, env={}), "w1")
    assert conf["client.id"] == "a-w1-standby"
    assert conf["isolation.level"] == "read_committed"
    assert conf["auto.offset.reset"] == "error"
