"""Keys that are not strings: the query server reads a path's key in the store's terms (JSON
text for JSON, Avro, ... keys), encodes it with the key serde, and renders keys back."""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from eokafka.runtime.query.desk import QueryDesk
from eokafka.runtime.query.server import QueryServer, StoreRoute
from eokafka.runtime.tasks.task import Task, TaskState
from eokafka.serdes import Avro, Json, String
from eokafka.state import InMemoryBackend, Store
from tests.unit.test_query_desk import Tasks

TOPIC = "orders"


class OnePartition:
    """The two things the server asks the group: a topic's partition count, here 1."""

    def partitions(self, topic: str) -> int:
        return 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def base_url() -> Iterator[str]:
    stores = ("counts", "ids", "names")
    task = Task(0, frozenset({TOPIC}), stores, {n: f"app-{n}-changelog" for n in stores})
    task.stores["counts"] = Store("counts", InMemoryBackend(), Json(), Json())
    task.stores["ids"] = Store("ids", InMemoryBackend(), Avro("long"), Json())
    task.stores["names"] = Store("names", InMemoryBackend(), String(), Json())
    task.inputs.add((TOPIC, 0))
    task.state = TaskState.RUNNING
    task.stores["counts"].put(42, "int 42")
    task.stores["counts"].put("42", "str 42")
    task.stores["counts"].put({"user": 7}, "user 7")
    task.stores["counts"].put("k1", "str k1")
    task.stores["ids"].put(42, "long 42")
    task.stores["names"].put("[1]", "text [1]")
    task.stores["names"].put("a/b", "text a/b")
    task.commit({(TOPIC, 0): 5})
    tasks = Tasks(stores_of={frozenset({TOPIC}): stores})
    tasks.tasks[(task.topics, task.index)] = task
    desk = QueryDesk(tasks, lambda: False, lambda: True)  # type: ignore[arg-type]
    routes = {
        "counts": StoreRoute("counts", TOPIC, Json(), "memory"),
        "ids": StoreRoute("ids", TOPIC, Avro("long"), "memory"),
        "names": StoreRoute("names", TOPIC, String(), "memory"),
    }
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = QueryServer(desk, routes, OnePartition(), "i0", url, None, 10.0, time.monotonic)  # type: ignore[arg-type]
    stop = threading.Event()

    def loop() -> None:  # the worker loop's part: answer what waits
        while not stop.is_set():
            desk.serve()
            stop.wait(0.005)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    server.start("127.0.0.1", port)
    try:
        yield url
    finally:
        stop.set()
        server.close()
        thread.join(10)


def _key(base: str, store: str, key: str, **params: str) -> requests.Response:
    path = f"{base}/v1/stores/{store}/keys/{urllib.parse.quote(key, safe='')}"
    return requests.get(path, params=params, timeout=10)


def _value(got: requests.Response) -> Any:
    assert got.status_code == 200, got.text
    body = got.json()
    return body["value"] if body["found"] else None


def test_a_json_keyed_store_reads_its_keys_as_json_text(base_url: str) -> None:
    assert _value(_key(base_url, "counts", "42")) == "int 42"
    assert _value(_key(base_url, "counts", '"42"')) == "str 42"
    assert _value(_key(base_url, "counts", '{"user": 7}')) == "user 7"
    assert _value(_key(base_url, "counts", "k1")) == "str k1"  # not JSON: the text itself
    assert _value(_key(base_url, "counts", "42", key_format="text")) == "str 42"
    assert _key(base_url, "counts", '{"user": 7}').json()["key"] == {"user": 7}
    assert _key(base_url, "counts", "42").json()["key"] == 42


def test_a_string_keyed_store_takes_the_text_as_it_is(base_url: str) -> None:
    assert _value(_key(base_url, "names", "[1]")) == "text [1]"
    assert _value(_key(base_url, "names", "a/b")) == "text a/b"
    got = _key(base_url, "names", "[1]", key_format="json")  # a JSON list is no string
    assert got.status_code == 400
    assert "'names'" in got.json()["error"] and "String" in got.json()["error"]


def test_an_avro_keyed_store_reads_json_and_refuses_what_its_schema_cant_encode(
    base_url: str,
) -> None:
    assert _value(_key(base_url, "ids", "42")) == "long 42"
    got = _key(base_url, "ids", "abc")
    assert got.status_code == 400, got.text
    error = got.json()["error"]
    assert "'ids'" in error and "Avro" in error and "abc" in error, error
    assert _key(base_url, "counts", "1", key_format="yaml").status_code == 400


def test_listed_keys_render_as_their_values(base_url: str) -> None:
    got = requests.get(f"{base_url}/v1/stores/counts/partitions/0/keys", timeout=10)
    assert got.status_code == 200, got.text
    keys = [item["key"] for item in got.json()["items"]]
    assert sorted(map(repr, keys)) == sorted(map(repr, [42, "42", {"user": 7}, "k1"]))


def test_the_client_sends_keys_that_are_not_str_as_json(base_url: str) -> None:
    from eokafka.query import QueryClient, QueryFailed

    client = QueryClient([base_url], patience=1)
    assert client.get("counts", 42)["value"] == "int 42"
    assert client.get("counts", {"user": 7})["value"] == "user 7"
    assert client.get("counts", "42")["value"] == "int 42"  # text that is JSON, in a JSON store
    assert client.get("counts", "42", key_format="text")["value"] == "str 42"
    assert client.get("names", "[1]")["value"] == "text [1]"
    assert {i["key"] for i in client.items("ids")} == {42}
    with pytest.raises(QueryFailed, match="Avro"):
        client.get("ids", "abc")
