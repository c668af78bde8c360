"""Where a worker sends a key it does not hold: the owner, or for ``?stale=1`` the workers
the standby plan names first and the owner last. The other workers are small HTTP stubs here;
the real ones are in tests/integration/test_query_stale.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from confluent_kafka import TopicPartition

from eokafka.runtime.query.desk import QueryDesk
from eokafka.runtime.query.owners import GroupView, Member
from eokafka.runtime.query.server import FORWARDED, QueryServer, StoreRoute
from eokafka.serdes import String
from tests.unit.test_query_desk import Tasks
from tests.unit.test_query_keys import _free_port

TOPIC = "orders"


@dataclass
class Stub:
    """Another worker: answers every GET with ``status``; notes what it was asked."""

    name: str
    status: int = 200
    asked: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Stub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802  the stdlib's name
                assert self.headers.get(FORWARDED) == "asker"
                stub.asked.append(self.path)
                body = json.dumps({"served_by": {"instance": stub.name}}).encode()
                self.send_response(stub.status)
                if stub.status == 503:
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self


class View:
    """The group as the asker reads it: partition 0 owned by ``owner``, its standby on
    ``standby``."""

    def __init__(self, owner: Stub, standby: Stub) -> None:
        self.stable = True
        self.owner, self.standby = owner, standby

    def partitions(self, topic: str) -> int:
        return 1

    def view(self) -> GroupView:
        owner = Member(self.owner.name, self.owner.url, (TopicPartition(TOPIC, 0),))
        standby = Member(self.standby.name, self.standby.url, ())
        return GroupView(self.stable, (owner, standby), {0: (standby,)})

    def forget(self) -> None:
        pass


@pytest.fixture
def world() -> Iterator[tuple[str, Stub, Stub, View]]:
    owner, standby = Stub("owner").start(), Stub("standby").start()
    view = View(owner, standby)
    desk = QueryDesk(Tasks(stores_of={frozenset({TOPIC}): ("totals",)}), lambda: False,
                     lambda: True)  # type: ignore[arg-type]  # fmt: skip
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    routes = {"totals": StoreRoute("totals", TOPIC, String(), "memory")}
    server = QueryServer(desk, routes, view, "asker", url, None, 10.0, time.monotonic)  # type: ignore[arg-type]
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            desk.serve()
            stop.wait(0.005)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    server.start("127.0.0.1", port)
    try:
        yield url, owner, standby, view
    finally:
        stop.set()
        server.close()
        thread.join(10)
        for stub in (owner, standby):
            assert stub.server is not None
            stub.server.shutdown()


def _get(url: str, stale: bool) -> requests.Response:
    return requests.get(f"{url}/v1/stores/totals/keys/k1", params={"stale": "1"} if stale else {},
                        timeout=10)  # fmt: skip


def test_a_fresh_read_goes_to_the_owner_only(world: tuple[str, Stub, Stub, View]) -> None:
    url, owner, standby, _ = world
    got = _get(url, stale=False)
    assert got.status_code == 200 and got.json()["served_by"]["instance"] == "owner"
    assert standby.asked == []


def test_a_stale_read_goes_to_the_standby_first(world: tuple[str, Stub, Stub, View]) -> None:
    url, owner, standby, _ = world
    got = _get(url, stale=True)
    assert got.status_code == 200 and got.json()["served_by"]["instance"] == "standby"
    assert standby.asked == ["/v1/stores/totals/keys/k1?stale=1"] and owner.asked == []


def test_a_standby_that_refuses_makes_way_for_the_owner(
    world: tuple[str, Stub, Stub, View],
) -> None:
    url, owner, standby, _ = world
    standby.status = 503
    got = _get(url, stale=True)
    assert got.status_code == 200 and got.json()["served_by"]["instance"] == "owner"
    assert len(standby.asked) == 1 and len(owner.asked) == 1


def test_while_the_group_rebalances_only_a_standby_may_answer(
    world: tuple[str, Stub, Stub, View],
) -> None:
    url, owner, standby, view = world
    view.stable = False
    assert _get(url, stale=False).status_code == 503
    got = _get(url, stale=True)
    assert got.status_code == 200 and got.json()["served_by"]["instance"] == "standby"
    standby.status = 503
    refused = _get(url, stale=True)
    assert refused.status_code == 503 and refused.headers.get("Retry-After"), refused.text
    assert owner.asked == []
