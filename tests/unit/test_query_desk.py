"""The desk answers from committed state only, and refuses what it can't answer now."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pytest

from eokafka.client_configs import client_id_parts, consumer_client_id
from eokafka.config import Settings
from eokafka.errors import ConfigError
from eokafka.runtime.query.desk import NotHere, QueryDesk
from eokafka.runtime.query.reads import KeyQuery, QueryError, ScanQuery
from eokafka.runtime.tasks.task import Task, TaskState
from eokafka.state import InMemoryBackend, Store

TOPIC = "orders"


@dataclass
class Tasks:
    """The two things the desk reads of the task manager."""

    tasks: dict[tuple[frozenset[str], int], Task] = field(default_factory=dict)
    stores_of: dict[frozenset[str], tuple[str, ...]] = field(
        default_factory=lambda: {frozenset({TOPIC}): ("totals",)}
    )


def _task(state: TaskState = TaskState.RUNNING) -> Task:
    task = Task(0, frozenset({TOPIC}), ("totals",), {"totals": "app-totals-changelog"})
    task.stores["totals"] = Store("totals", InMemoryBackend())
    task.inputs.add((TOPIC, 0))
    task.state = state
    return task


def _desk(task: Task | None, resyncing: bool = False) -> QueryDesk:
    tasks = Tasks()
    if task is not None:
        tasks.tasks[(task.topics, task.index)] = task
    return QueryDesk(tasks, lambda: resyncing, lambda: True)  # type: ignore[arg-type]


def _answer(desk: QueryDesk, query: KeyQuery | ScanQuery) -> dict[str, Any]:
    future: Future[dict[str, Any]] = desk.ask(query)
    desk.serve()
    return future.result(0)


def test_an_answer_is_the_committed_value_never_the_open_transactions() -> None:
    task = _task()
    store = task.stores["totals"]
    store.put("k", 5)
    task.commit({(TOPIC, 0): 7})  # committed: the value and the offset together
    store.put("k", 9)  # the open transaction's write
    desk = _desk(task)
    answer = _answer(desk, KeyQuery("totals", "k", 0))
    assert (answer["found"], answer["value"]) == (True, 5)
    assert answer["input_offsets"] == {f"{TOPIC}[0]": 7}
    assert _answer(desk, KeyQuery("totals", "new", 0))["found"] is False
    store.abort()
    assert _answer(desk, KeyQuery("totals", "k", 0))["value"] == 5


def test_keys_are_paged_and_filtered_by_prefix_and_range() -> None:
    task = _task()
    store = task.stores["totals"]
    for key in ("b1", "a2", "a1", "c1", "a10"):
        store.put(key, 1)
    task.commit({})
    desk = _desk(task)
    first = _answer(desk, ScanQuery("totals", 0, limit=2))
    assert [i["key"] for i in first["items"]] == ["a1", "a10"]
    rest = _answer(desk, ScanQuery("totals", 0, limit=10, after=first["next"]))
    assert [i["key"] for i in rest["items"]] == ["a2", "b1", "c1"] and rest["next"] is None
    prefixed = _answer(desk, ScanQuery("totals", 0, prefix="a1"))
    assert [i["key"] for i in prefixed["items"]] == ["a1", "a10"]
    ranged = _answer(desk, ScanQuery("totals", 0, start="a2", end="c1"))
    assert [i["key"] for i in ranged["items"]] == ["a2", "b1"]


@pytest.mark.parametrize("state", [TaskState.RESTORING, TaskState.CREATED])
def test_a_task_not_running_is_refused_with_a_retry(state: TaskState) -> None:
    with pytest.raises(QueryError) as refused:
        _answer(_desk(_task(state)), KeyQuery("totals", "k", 0))
    assert refused.value.status == 503 and refused.value.retry_after


def test_a_resync_is_refused_and_a_partition_elsewhere_is_not_here() -> None:
    with pytest.raises(QueryError) as refused:
        _answer(_desk(_task(), resyncing=True), KeyQuery("totals", "k", 0))
    assert refused.value.status == 503
    with pytest.raises(NotHere):
        _answer(_desk(None), KeyQuery("totals", "k", 0))
    with pytest.raises(QueryError) as unknown:
        _answer(_desk(None), KeyQuery("nope", "k", 0))
    assert unknown.value.status == 404


def test_the_status_says_ready_only_when_every_task_runs() -> None:
    desk = _desk(_task(TaskState.RESTORING))
    desk.serve()
    assert not desk.status.ready
    desk = _desk(_task())
    desk.serve()
    assert desk.status.ready


def test_a_server_beyond_loopback_needs_a_token_and_the_token_is_redacted() -> None:
    with pytest.raises(ConfigError, match="http_token"):
        Settings("app", http_port=8080, http_host="0.0.0.0")
    settings = Settings("app", http_port=8080, http_host="0.0.0.0", http_token="s3cret-t0ken")
    assert "s3cret-t0ken" not in repr(settings)
    Settings("app", http_port=8080)  # loopback by default: no token needed


def test_the_query_url_rides_in_the_consumers_client_id() -> None:
    settings = Settings("app")
    with_url = consumer_client_id(settings, "w1", "http://10.0.0.7:9500")
    assert client_id_parts(with_url) == ("app-w1-consumer", "http://10.0.0.7:9500")
    assert client_id_parts(consumer_client_id(settings, "w1")) == ("app-w1-consumer", None)
