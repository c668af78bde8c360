"""A key's windows over a time range: the store keeps open windows only, and the answer says
up to where windows have closed (emitted, no longer kept) by the committed stream time."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from eokafka.runtime.query.desk import QueryDesk
from eokafka.runtime.query.reads import WindowQuery
from eokafka.runtime.tasks.task import Task, TaskState
from eokafka.serdes import Json
from eokafka.state import InMemoryBackend, StreamTimeStore, WindowStore, stream_time_store
from eokafka.windows import KeyState, Session, Sliding, Tumbling, encode_state
from eokafka.windows.definition import Windows
from tests.unit.test_query_desk import Tasks

TOPIC = "clicks"
AGG = "agg"
CLOCK = stream_time_store(AGG)
WINDOWS = Tumbling(1000, grace_ms=300)


def _task() -> Task:
    stores = (AGG, CLOCK)
    task = Task(0, frozenset({TOPIC}), stores, {n: f"app-{n}-changelog" for n in stores})
    task.stores[AGG] = WindowStore(AGG, InMemoryBackend(), value_serde=Json())
    task.stores[CLOCK] = StreamTimeStore(CLOCK, InMemoryBackend())
    task.inputs.add((TOPIC, 0))
    task.state = TaskState.RUNNING
    return task


def _write(task: Task, entries: list[list[Any]], stream_time: int) -> None:
    store, clock = task.stores[AGG], task.stores[CLOCK]
    assert isinstance(store, WindowStore) and isinstance(clock, StreamTimeStore)
    payload = encode_state(KeyState(entries), Json().serialize)
    store.put_entry(b"k", entries[0][1] + WINDOWS.grace_ms, payload)
    clock.set_stream_time(stream_time)


def _ask(task: Task, start: int | None, end: int | None = None,
         windows: Windows | None = WINDOWS) -> dict[str, Any]:  # fmt: skip
    tasks = Tasks(stores_of={frozenset({TOPIC}): (AGG, CLOCK)})
    tasks.tasks[(task.topics, task.index)] = task
    desk = QueryDesk(tasks, lambda: False, lambda: True)  # type: ignore[arg-type]
    future: Future[dict[str, Any]] = desk.ask(WindowQuery(AGG, "k", 0, b"k", start, end, windows))
    desk.serve()
    return future.result(0)


def test_an_answer_says_which_windows_closed_by_the_committed_stream_time() -> None:
    task = _task()
    _write(task, [[2000, 3000, 5]], stream_time=2500)
    task.commit({(TOPIC, 0): 10})
    _write(task, [[3000, 4000, 1]], stream_time=3400)  # the open transaction's: not shown
    answer = _ask(task, 0)
    assert answer["windows"] == [{"start": 2000, "end": 3000, "value": 5}]
    assert answer["stream_time"] == 2500
    assert answer["closed_through"] == 2200  # windows ending at or before it closed
    assert answer["complete"] is False  # [0, ...) reaches windows that closed: not kept
    assert "output topic" in answer["note"]
    later = _ask(task, 2200, 5000)
    assert later["complete"] is True and "note" not in later
    assert later["windows"] == answer["windows"]
    assert _ask(task, 0, 2000)["windows"] == []


def test_before_any_record_nothing_has_closed() -> None:
    answer = _ask(_task(), 0)
    assert answer["windows"] == [] and answer["stream_time"] is None
    assert answer["closed_through"] is None and answer["complete"] is True


def test_each_kind_of_window_closes_where_its_definition_says() -> None:
    # Hopping/tumbling: end + grace <= stream time; sessions: end + gap + grace < stream
    # time; sliding: end + grace < stream time (windows include their end).
    assert WINDOWS.closed_through(2500) == 2200
    assert Session(gap_ms=100, grace_ms=50).closed_through(1000) == 849
    assert Sliding(size_ms=100, grace_ms=50).closed_through(1000) == 949
    task = _task()
    _write(task, [[2000, 3000, 5]], stream_time=2500)
    task.commit({})
    unknown = _ask(task, 0, windows=None)  # a window store no definition is known for
    assert unknown["stream_time"] == 2500 and unknown["closed_through"] is None
    assert unknown["complete"] is None
