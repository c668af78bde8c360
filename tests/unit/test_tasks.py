"""The task lifecycle, the task manager's moves through rebalances, and the group protocol
settings eokafka accepts or refuses (pure logic, no broker)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

import eokafka
from eokafka.client_configs import consumer_config, rebalance_protocol
from eokafka.config import resolve
from eokafka.errors import ConfigError, EokafkaError
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.tasks.commits import TaskCommits
from eokafka.runtime.tasks.groups import copartitioned_groups, spans_topics
from eokafka.runtime.tasks.manager import TaskManager
from eokafka.runtime.tasks.task import Task, TaskState, TaskStateError
from eokafka.state import StoreLockedError

S = TaskState


def _task() -> Task:
    return Task(0, frozenset({"a"}), ("counts",))


def test_the_lifecycle_goes_created_restoring_running_suspended_closed() -> None:
    task = _task()
    for state in (S.RESTORING, S.RUNNING, S.SUSPENDED, S.RESTORING, S.RUNNING, S.SUSPENDED):
        task.to(state)
    task.to(S.CLOSED)
    assert task.state is S.CLOSED


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ((), S.RUNNING),  # created -> running skips the restore decision
        ((), S.SUSPENDED),
        ((S.RESTORING,), S.CREATED),
        ((S.RESTORING, S.RUNNING), S.CREATED),
        ((S.RESTORING, S.RUNNING, S.SUSPENDED), S.RUNNING),  # back only through restoring
        ((S.RESTORING, S.RUNNING, S.SUSPENDED), S.SUSPENDED),
        ((S.CLOSED,), S.RESTORING),
        ((S.CLOSED,), S.CLOSED),
    ],
)
def test_illegal_transitions_raise_naming_the_task(
    path: tuple[TaskState, ...], illegal: TaskState
) -> None:
    task = _task()
    for state in path:
        task.to(state)
    with pytest.raises(TaskStateError, match=rf"a\[0\]: no transition from \w+ to {illegal.value}"):
        task.to(illegal)
    assert task.state is (path[-1] if path else S.CREATED)


def test_an_input_of_another_task_is_refused() -> None:
    with pytest.raises(TaskStateError, match=r"b\[0\] is not one of its inputs"):
        _task().add_input(("b", 0))
    with pytest.raises(TaskStateError, match=r"a\[1\] is not one of its inputs"):
        _task().add_input(("a", 1))


class _Store:
    """An open store with nothing in its open transaction."""

    def pending_changelog(self) -> dict[bytes, bytes | None]:
        return {}

    def abort(self) -> None:
        pass

    def __len__(self) -> int:
        return 0


class _Stores:
    """The manager's store loader and changelog reader in one; ``behind`` stores restore
    until the test puts them in ``done``."""

    changelogs = {"counts": "tasks-unit-counts-changelog", "seen": "tasks-unit-seen-changelog"}

    def __init__(self, behind: set[tuple[str, int]] | None = None) -> None:
        self.restoring: dict[tuple[str, int], Any] = {}
        self.open_keys: set[tuple[str, int]] = set()
        self.behind = behind or set()
        self.done: list[tuple[str, int]] = []  # restores the next step finishes
        self.opened: list[tuple[str, int]] = []
        self.closed: list[tuple[str, int]] = []
        self.failures = 0  # the next opens that fail: the changelog's leader not known yet
        self.failure: Exception = KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))

    # the loader
    def open(self, name: str, partition: int) -> _Store:
        if self.failures:
            self.failures -= 1
            raise self.failure
        self.opened.append((name, partition))
        self.open_keys.add((name, partition))
        return _Store()

    def plan(self, name: str, partition: int, store: _Store) -> tuple[_Store, Any]:
        if (name, partition) in self.behind:
            return store, SimpleNamespace(name=name, partition=partition)
        return store, None

    def close(self, name: str, partition: int, store: _Store | None = None) -> None:
        self.restoring.pop((name, partition), None)
        self.open_keys.discard((name, partition))
        self.closed.append((name, partition))

    # the reader
    def start(self, restore: Any) -> None:
        self.restoring[(restore.name, restore.partition)] = restore

    def cancel(self, restore: Any) -> None:
        self.restoring.pop((restore.name, restore.partition), None)

    suspend = cancel

    def assign(self) -> None:
        pass

    def step(self, timeout: float) -> tuple[list[Any], list[Any]]:
        finished = [self.restoring.pop(key) for key in self.done if key in self.restoring]
        self.done.clear()
        return finished, []


def _assign(
    tasks: TaskManager, partitions: list[TopicPartition], reset: dict[tuple[str, int], int]
) -> list[TopicPartition]:
    """As the assign callback and then the committed offsets do: the inputs to keep paused."""
    tasks.assigned(partitions)
    assert tasks.awaiting == [TopicPartition(tp.topic, tp.partition) for tp in partitions]
    return tasks.offsets_known(partitions, reset)


def _tasks(stores: _Stores, **kw: Any) -> TaskManager:
    metrics = WorkerMetrics("tasks-unit", "t", "0")
    return TaskManager(_app().topology, None, metrics, "g", stores, stores, **kw)  # type: ignore[arg-type]


def _app() -> eokafka.App:
    app = eokafka.App("tasks-unit")
    app.store("counts")
    app.store("seen")

    @app.processor("a", "b", stores=["counts"])
    def both(record: object, ctx: object) -> None:
        pass

    @app.processor("c", stores=["seen"])
    def single(record: object, ctx: object) -> None:
        pass

    @app.processor("d")
    def stateless(record: object, ctx: object) -> None:
        pass

    return app


def _tps(*names: str) -> list[TopicPartition]:
    return [TopicPartition(n[0], int(n[1:]), 0) for n in names]


def test_topics_sharing_a_store_form_one_group_the_others_their_own() -> None:
    topology = _app().topology
    groups = copartitioned_groups(topology)
    assert groups["a"] == groups["b"] == frozenset({"a", "b"})
    assert groups["c"] == frozenset({"c"}) and groups["d"] == frozenset({"d"})
    assert spans_topics(topology)


def test_a_task_runs_only_with_all_its_co_partitioned_inputs() -> None:
    stores = _Stores()
    tasks = _tasks(stores)
    paused = _assign(tasks, _tps("a0", "c0", "d0"), {})
    assert paused == [TopicPartition("a", 0)]  # waits for b[0]
    assert stores.opened == [("seen", 0)]
    assert _assign(tasks, _tps("b0"), {}) == []
    assert stores.opened == [("seen", 0), ("counts", 0)]
    task = tasks.tasks[(frozenset({"a", "b"}), 0)]
    assert task.state is S.RUNNING and task.inputs == {("a", 0), ("b", 0)}
    assert tasks.revoked([TopicPartition("b", 0)]) == [TopicPartition("a", 0)]
    assert task.state is S.SUSPENDED


def test_suspended_tasks_keep_their_stores_and_only_those_not_given_back_close() -> None:
    clock = [0.0]
    stores = _Stores()
    tasks = _tasks(stores, clock=lambda: clock[0], settle_s=5.0)
    _assign(tasks, _tps("c0", "c1"), {})
    tasks.revoked(_tps("c0", "c1"))  # eager: everything
    assert _assign(tasks, _tps("c1"), {}) == []  # c1 is back: not opened again
    assert stores.opened == [("seen", 0), ("seen", 1)]
    assert tasks.settle() and stores.closed == [("seen", 0)]
    assert tasks.tasks[(frozenset({"c"}), 1)].state is S.RUNNING

    tasks.revoked(_tps("c1"))  # incremental: closed a settling time later, not at once
    clock[0] = 4.0
    assert tasks.settle(clock[0]) == [] and ("seen", 1) in stores.open_keys
    clock[0] = 5.0
    assert [t.name for t in tasks.settle(clock[0])] == ["c[1]"]
    assert stores.closed == [("seen", 0), ("seen", 1)] and not tasks.tasks


def test_a_task_whose_store_is_behind_restores_before_it_runs() -> None:
    stores = _Stores(behind={("seen", 0)})
    tasks = _tasks(stores)
    assert _assign(tasks, _tps("c0"), {("c", 0): 0}) == [TopicPartition("c", 0)]
    task = tasks.tasks[(frozenset({"c"}), 0)]
    assert task.state is S.RESTORING and tasks.restoring
    assert task.reset_positions == {("c", 0): 0}
    assert tasks.restore_step() == []
    stores.done.append(("seen", 0))
    assert tasks.restore_step() == [TopicPartition("c", 0)] and task.state is S.RUNNING
    assert not tasks.restoring


# The changelog's leader not known yet, or the store's files still held by the worker the
# task comes from (a shared state directory): both pass, so both are retried.
_PASSING = {
    "no-leader": KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION)),
    "locked": StoreLockedError(Path("/s/seen/0"), "rocksdb store /s/seen/0: lock file held"),
}


@pytest.mark.parametrize("cause", sorted(_PASSING))
def test_a_restore_that_cant_be_decided_in_the_callback_is_retried_by_the_loop(
    cause: str,
) -> None:
    clock = [0.0]
    stores = _Stores()
    stores.failures = 2
    stores.failure = _PASSING[cause]
    tasks = _tasks(stores, clock=lambda: clock[0])
    assert _assign(tasks, _tps("c0"), {}) == [TopicPartition("c", 0)]  # no exception
    task = tasks.tasks[(frozenset({"c"}), 0)]
    assert task.state is S.RESTORING and tasks.restoring
    assert tasks.restore_step() == []  # too soon to ask again
    clock[0] = 1.0
    assert tasks.restore_step() == []  # failed once more
    clock[0] = 2.0
    assert tasks.restore_step() == [TopicPartition("c", 0)] and task.state is S.RUNNING


@pytest.mark.parametrize(
    ("cause", "why"),
    [("no-leader", "the changelog offsets of its stores"), ("locked", "held by another process")],
)
def test_a_restore_that_never_can_be_decided_stops_the_worker_naming_the_task(
    cause: str, why: str
) -> None:
    clock = [0.0]
    stores = _Stores()
    stores.failures = 1_000
    stores.failure = _PASSING[cause]
    tasks = _tasks(stores, clock=lambda: clock[0])
    _assign(tasks, _tps("c0"), {})
    clock[0] = 61.0
    with pytest.raises(EokafkaError, match=rf"task c\[0\] \(stores seen\) could not .*{why}"):
        tasks.restore_step()


def test_committed_offsets_live_in_the_tasks_and_leave_with_their_inputs() -> None:
    tasks = _tasks(_Stores())
    _assign(tasks, _tps("c0", "d0"), {})
    commits = TaskCommits(tasks, WorkerMetrics("tasks-unit", "t", "0"), lambda *_: 0, 120.0)
    commits.committed([TopicPartition("c", 0, 7), TopicPartition("d", 0, 9)])
    assert tasks.committed_offsets() == {("c", 0): 7, ("d", 0): 9}
    tasks.revoked(_tps("d0"))
    assert tasks.committed_offsets() == {("c", 0): 7}
    assert [(tp.topic, tp.partition) for tp in tasks.assignment] == [("c", 0)]


def test_assigned_inputs_await_their_committed_offsets_before_their_task_starts() -> None:
    stores = _Stores()
    tasks = _tasks(stores)
    tasks.assigned(_tps("c0", "d0"))
    assert tasks.awaiting == [TopicPartition("c", 0), TopicPartition("d", 0)]
    assert tasks.assignment == [] and stores.opened == []  # nothing opened, nothing committed
    tasks.settle()  # the assign callback's: a task awaiting its offsets is not closed
    assert len(tasks.tasks) == 2
    assert tasks.offsets_known([TopicPartition("d", 0, 5)], {}) == []
    assert tasks.assignment == [TopicPartition("d", 0)]
    assert tasks.awaiting == [TopicPartition("c", 0)]
    tasks.revoked(_tps("c0"))  # left before its offset came
    assert tasks.awaiting == [] and tasks.offsets_known([TopicPartition("c", 0, 3)], {}) == []
    assert stores.opened == [] and tasks.committed_offsets() == {("d", 0): 5}


def test_a_task_given_back_keeps_its_stores_while_its_offsets_are_read() -> None:
    stores = _Stores()
    tasks = _tasks(stores)
    _assign(tasks, _tps("c0"), {})
    tasks.revoked(_tps("c0"))  # eager: everything, then given back
    tasks.assigned(_tps("c0"))
    assert tasks.settle() == [] and stores.closed == []
    assert tasks.offsets_known(_tps("c0"), {}) == []
    assert tasks.tasks[(frozenset({"c"}), 0)].state is S.RUNNING
    assert stores.opened == [("seen", 0)]  # opened once, kept across the rebalance


# -- group protocol settings -------------------------------------------------------------


def _conf(config: dict[str, str], copartitioned: bool = False) -> dict[str, Any]:
    return consumer_config(resolve("g", {"config": config}, env={}), "i", copartitioned)


def test_classic_range_is_the_default() -> None:
    conf = _conf({})
    assert conf["partition.assignment.strategy"] == "range"
    assert conf["session.timeout.ms"] == 45_000
    assert "group.protocol" not in conf
    assert rebalance_protocol(resolve("g", {}, env={})) == "eager"


def test_the_consumer_protocol_sets_the_range_remote_assignor_and_no_classic_keys() -> None:
    conf = _conf({"consumer.group.protocol": "consumer"}, copartitioned=True)
    assert conf["group.protocol"] == "consumer" and conf["group.remote.assignor"] == "range"
    for key in ("session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy"):
        assert key not in conf
    assert conf["group.instance.id"] == "i"
    s = resolve("g", {"config": {"group.protocol": "consumer"}}, env={})
    assert rebalance_protocol(s) == "consumer"


def test_cooperative_sticky_is_incremental_when_no_store_spans_topics() -> None:
    conf = _conf({"consumer.partition.assignment.strategy": "cooperative-sticky"})
    assert conf["partition.assignment.strategy"] == "cooperative-sticky"
    s = resolve("g", {"config": {"partition.assignment.strategy": "cooperative-sticky"}}, env={})
    assert rebalance_protocol(s) == "cooperative"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"consumer.group.protocol": "streams"}, r"group.protocol='streams': choose classic"),
        (
            {"consumer.group.protocol": "consumer", "consumer.session.timeout.ms": "6000"},
            r"session.timeout.ms is a classic group protocol setting",
        ),
        (
            {"group.protocol": "consumer", "heartbeat.interval.ms": "1000"},
            r"heartbeat.interval.ms is a classic group protocol setting",
        ),
        (
            {"group.protocol": "consumer", "partition.assignment.strategy": "range"},
            r"partition.assignment.strategy is a classic group protocol setting",
        ),
        (
            {"group.protocol": "consumer", "group.remote.assignor": "sticky"},
            r"group.remote.assignor='sticky': eokafka supports range",
        ),
        ({"group.remote.assignor": "range"}, r"applies only to group.protocol=consumer"),
        (
            {"partition.assignment.strategy": "range,roundrobin"},
            r"partition.assignment.strategy='range,roundrobin': choose one of",
        ),
    ],
)
def test_settings_no_protocol_accepts_are_refused(config: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _conf(config)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"partition.assignment.strategy": "roundrobin"},
            r"partition.assignment.strategy='roundrobin' is refused: a store is fed by more",
        ),
        (
            {"consumer.partition.assignment.strategy": "cooperative-sticky"},
            r"partition.assignment.strategy='cooperative-sticky' is refused",
        ),
        (
            {"group.protocol": "consumer", "group.remote.assignor": "uniform"},
            r"group.remote.assignor='uniform' is refused: a store is fed by more",
        ),
    ],
)
def test_assignors_that_split_co_partitioned_topics_are_refused(
    config: dict[str, str], message: str
) -> None:
    _conf(config)  # fine while no store spans two topics
    with pytest.raises(ConfigError, match=message):
        _conf(config, copartitioned=True)
