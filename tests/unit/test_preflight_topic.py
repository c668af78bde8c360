"""The worker's first contact asks the cluster for one topic's metadata, not every topic's:
the answer for all topics of a shared cluster (thousands) costs CPU on every start."""

from __future__ import annotations

from typing import Any

import pytest

import eokafka
from eokafka.runtime.process import preflight
from eokafka.runtime.process.supervisor import run_worker


class _Answered(Exception):
    """Raised by the fake admin once it answered: the worker stops right after its preflight."""


class _Admin:
    def __init__(self, asked: list[str | None]) -> None:
        self.asked = asked

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        self.asked.append(topic)
        raise _Answered


def test_the_preflight_asks_for_the_first_input_topic_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str | None] = []
    monkeypatch.setattr(preflight, "kafka_admin", lambda conf: _Admin(asked))
    app = eokafka.App("preflight-topic", bootstrap_servers="127.0.0.1:1")

    @app.processor("payments")
    def pay(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
        ctx.send("out", key=record.key, value=record.value)

    @app.processor("orders")
    def order(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
        ctx.send("out", key=record.key, value=record.value)

    with pytest.raises(_Answered):
        run_worker(app.topology, app.settings({}))
    assert asked == ["orders"]


def test_without_a_topic_it_asks_for_all(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str | None] = []
    monkeypatch.setattr(preflight, "kafka_admin", lambda conf: _Admin(asked))
    app = eokafka.App("preflight-all", bootstrap_servers="127.0.0.1:1")
    with pytest.raises(_Answered):
        preflight.check_connection(app.settings({}))
    assert asked == [None]
