"""StandbyReplicas over the in-memory cluster: placement adopted, tailing, hand-over."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from confluent_kafka import ConsumerGroupState, TopicPartition

import eokafka
from eokafka.config import resolve
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.clients import Clients
from eokafka.runtime.tasks.standby import StandbyReplicas
from eokafka.testing.clients import MemoryConsumer
from eokafka.testing.cluster import MemoryCluster

APP = "sb"
CHANGELOG = f"{APP}-counts-changelog"


class GroupAdmin:
    """describe_consumer_groups answers with the members the test sets."""

    def __init__(self) -> None:
        self.owned: dict[str, set[int]] = {}
        self.state = ConsumerGroupState.STABLE

    def describe_consumer_groups(self, groups: list[str], **_: Any) -> dict[str, Any]:
        members = [
            SimpleNamespace(
                member_id=f"id-{name}",
                group_instance_id=name,
                client_id=f"{APP}-{name}-consumer",
                assignment=SimpleNamespace(
                    topic_partitions=[TopicPartition("in", p) for p in parts]
                ),
                target_assignment=None,
            )
            for name, parts in self.owned.items()
        ]
        future = SimpleNamespace(
            done=lambda: True, result=lambda: SimpleNamespace(state=self.state, members=members)
        )
        return dict.fromkeys(groups, future)


def _standbys(
    tmp_path: Path, backend: str = "memory"
) -> tuple[StandbyReplicas, MemoryCluster, GroupAdmin, WorkerMetrics]:
    app = eokafka.App(APP)
    app.store("counts", backend=backend)  # type: ignore[arg-type]

    @app.processor("in", stores=["counts"])
    def count(record: object, ctx: object) -> None:
        pass

    settings = resolve(APP, {"num_standby_replicas": 1, "state_dir": str(tmp_path)}, env={})
    cluster = MemoryCluster()
    cluster.create_topic("in", 2)
    cluster.create_topic(CHANGELOG, 2)
    clients = Clients(
        restore_consumer=lambda conf: MemoryConsumer(cluster, conf), clock=cluster.clock
    )
    admin = GroupAdmin()
    metrics = WorkerMetrics(APP, "w1", "0")
    standby = StandbyReplicas(
        settings, app.topology, metrics, admin, "w1", lambda: "id-w1", clients
    )
    return standby, cluster, admin, metrics


def _write(cluster: MemoryCluster, partition: int, pairs: list[tuple[str, int]]) -> None:
    for key, value in pairs:
        k, v = json.dumps(key).encode(), json.dumps(value).encode()
        cluster.append(CHANGELOG, partition, k, v, None, None)


def _settle(standby: StandbyReplicas, cluster: MemoryCluster, steps: int = 3) -> None:
    """Step the loop a virtual second at a time: membership reads, tailing, lag gauges."""
    for _ in range(steps):
        standby.step()
        cluster.now_ms += 1_000


def _gauge(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_standby_tails_the_partition_its_owner_has_and_hands_it_over_warm(
    tmp_path: Path,
) -> None:
    standby, cluster, admin, metrics = _standbys(tmp_path)
    admin.owned = {"w0": {0}, "w1": {1}}
    _write(cluster, 0, [("a", 1), ("b", 2), ("a", 3)])
    _write(cluster, 1, [("z", 9)])
    standby.replan({1})
    _settle(standby, cluster)
    assert set(standby.standbys) == {("counts", 0)}  # never the partition it owns
    assert _gauge(metrics, "eokafka_standby_lag", store="counts", partition="0") == 0
    _write(cluster, 0, [("b", 5)])
    _settle(standby, cluster)
    store = standby.take("counts", 0)
    assert store is not None
    assert dict(store.items()) == {"a": 3, "b": 5}
    assert store.checkpoint == 4  # read up to the end: the active side restores nothing
    assert standby.take("counts", 0) is None and not standby.standbys
    assert _gauge(metrics, "eokafka_standby_lag", store="counts", partition="0") is None
    assert _gauge(metrics, "eokafka_records_restored_total", store="counts", partition="0") is None
    standby.close()
    assert not standby.release("counts", 0, store)  # a stopping worker keeps no standbys


def test_a_released_store_stays_until_a_new_plan_puts_its_standby_elsewhere(
    tmp_path: Path,
) -> None:
    standby, cluster, admin, _ = _standbys(tmp_path)
    admin.owned = {"w0": {0}, "w1": {1}}
    standby.replan({1})
    _settle(standby, cluster)
    assert set(standby.standbys) == {("counts", 0)}
    active = standby.take("counts", 0)
    assert active is not None
    admin.owned = {"w0": {0}, "w00": set(), "w1": {1}}  # w00 is next after w0 in the ring
    assert standby.release("counts", 0, active)  # kept until the next plan decides
    assert set(standby.standbys) == {("counts", 0)}
    standby.replan({1})
    _settle(standby, cluster)
    assert not standby.standbys
    admin.owned = {"w0": {0}, "w1": {1}}  # w00 left: the standby of 0 comes back
    standby.replan({1})
    _settle(standby, cluster)
    assert set(standby.standbys) == {("counts", 0)}
    standby.close()


def test_no_plan_is_adopted_while_the_group_is_rebalancing(tmp_path: Path) -> None:
    standby, cluster, admin, _ = _standbys(tmp_path)
    admin.owned = {"w0": {0}, "w1": {1}}
    admin.state = ConsumerGroupState.PREPARING_REBALANCING
    standby.replan({1})
    _settle(standby, cluster)
    assert not standby.standbys
    admin.state = ConsumerGroupState.STABLE
    _settle(standby, cluster)
    assert set(standby.standbys) == {("counts", 0)}
    standby.close()


def test_persistent_stores_get_no_standby(tmp_path: Path) -> None:
    """Their files are their warm copy on their disk; a standby would lock them."""
    standby, cluster, admin, _ = _standbys(tmp_path, backend="sqlite")
    admin.owned = {"w0": {0}, "w1": {1}}
    standby.replan({1})
    _settle(standby, cluster)
    assert not standby.standbys
    assert standby.take("counts", 0) is None
    store = SimpleNamespace(restoring=False)
    assert not standby.release("counts", 0, store)  # type: ignore[arg-type]
    standby.close()
