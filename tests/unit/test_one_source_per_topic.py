"""One input topic has one source (invariant 15): a second is refused where it is
declared, and the one source's record is all-or-nothing, however it fans out."""

from __future__ import annotations

import inspect
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import eokafka
from eokafka import serdes
from eokafka.errors import TopologyError
from eokafka.testing import TestDriver

S, J = serdes.String(), serdes.Json()
HERE = "test_one_source_per_topic.py"


def _line() -> int:
    """The caller's line number."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno


def _copy(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    ctx.send("copies", record.key, record.value)


def _audit(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    ctx.send("audit", record.key, record.value)


# Each declares two sources of topic 'in', noting the line of each declaration in ``at``.
def _stream_then_stream(app: eokafka.App, at: list[int]) -> None:
    at.append(_line() + 1)
    app.stream("in").to("a")
    at.append(_line() + 1)
    app.stream("in").to("b")


def _stream_then_processor(app: eokafka.App, at: list[int]) -> None:
    at.append(_line() + 1)
    app.stream("in").filter(lambda k, v: True).to("a")
    at.append(_line() + 1)
    app.processor("in")(_audit)


def _processor_then_processor(app: eokafka.App, at: list[int]) -> None:
    at.append(_line() + 1)
    app.processor("in", name="copy")(_copy)
    at.append(_line() + 1)
    app.processor("in", name="audit")(_audit)


def _table_then_stream(app: eokafka.App, at: list[int]) -> None:
    at.append(_line() + 1)
    app.table("in", name="t")
    at.append(_line() + 1)
    app.stream("in").to("b")


def _overlapping_topic_lists(app: eokafka.App, at: list[int]) -> None:
    at.append(_line() + 1)
    app.processor("other", "in")(_copy)
    at.append(_line() + 1)
    app.processor("in", "third")(_audit)


@pytest.mark.parametrize(
    ("declare", "names"),
    [
        (_stream_then_stream, ("stream > to(a)", "stream")),
        (_stream_then_processor, ("stream > filter > to(a)", "_audit")),
        (_processor_then_processor, ("copy", "audit")),
        (_table_then_stream, ("table > store(t)", "stream")),
        (_overlapping_topic_lists, ("_copy", "_audit")),
    ],
)
def test_a_second_source_of_a_topic_is_refused_naming_both(
    declare: Callable[[eokafka.App, list[int]], None], names: tuple[str, str]
) -> None:
    app = eokafka.App("twice")
    at: list[int] = []
    with pytest.raises(TopologyError) as refused:
        declare(app, at)
    message = str(refused.value)
    assert message.startswith("topic 'in' has already been registered by another source")
    (first, second), (first_at, second_at) = names, at
    assert re.search(
        rf"processor {re.escape(repr(first))} \(declared at \S*{HERE}:{first_at}\).*"
        rf"processor {re.escape(repr(second))} \(declared at \S*{HERE}:{second_at}\)",
        message,
    ), message
    assert "all-or-nothing" in message
    assert "one app.stream()" in message and "one @app.processor" in message
    assert "app.table(...).to_stream()" in message


def test_one_processor_on_several_topics_is_one_source_each() -> None:
    app = eokafka.App("multi")
    app.processor("a", "b")(_copy)
    assert app.topology.topics == ["a", "b"]
    with pytest.raises(TopologyError, match="topic 'b' has already been registered"):
        app.stream("b")


# -- all-or-nothing per input record, and its one poison verdict -------------------------------


def _checked(order: dict[str, Any]) -> dict[str, Any]:
    if order.get("bad"):
        raise ValueError(f"order {order['id']} is bad")
    return order


def _fan_out() -> eokafka.App:
    """One stream in two branches: a count (a store write) first, then a check that raises."""
    app = eokafka.App("fan", on_error="dead-letter")
    orders = app.stream("orders", key_serde=S, value_serde=J)
    orders.group_by_key().count(name="n").to("counts", key_serde=S, value_serde=J)
    orders.map_values(_checked).to("copies", key_serde=S, value_serde=J)
    return app


def test_a_record_that_fails_in_one_branch_has_no_output_in_any_and_one_dead_letter() -> None:
    app = _fan_out()
    [source] = app.topology.sources
    orders = [{"id": i, "bad": i % 7 == 3} for i in range(40)]
    keys = [f"c{i % 4}" for i in range(40)]
    with TestDriver(app, partitions=2) as driver:
        for key, order in zip(keys, orders, strict=True):
            driver.pipe("orders", key, order, commit=False)
        driver.commit()
        counts = [(r.key, r.value) for r in driver.output("counts", key_serde=S, value_serde=J)]
        copies = [r.value["id"] for r in driver.output("copies", value_serde=J)]
        dead = driver.output("fan-dlq", value_serde=J)
        store = driver.store("n", committed=True)
    good = [(k, o) for k, o in zip(keys, orders, strict=True) if not o["bad"]]
    bad = [o["id"] for o in orders if o["bad"]]
    assert sorted(copies) == [o["id"] for _, o in good]
    assert store == Counter(k for k, _ in good)
    per_key: dict[str, list[int]] = {}
    for key, n in counts:
        per_key.setdefault(key, []).append(n)
    assert per_key == {k: list(range(1, n + 1)) for k, n in Counter(k for k, _ in good).items()}
    assert sorted(r.value["id"] for r in dead) == bad  # each bad record once
    for r in dead:
        headers = dict(r.headers)
        assert headers["eokafka.processor"] == source.name.encode()
        assert headers["eokafka.error.stage"] == b"process"


def test_a_record_set_aside_for_a_processor_is_set_aside_for_its_only_processor() -> None:
    """The scenario of a mark for processor X skipping processor Y's outputs can't be built:
    Y can't be declared on X's topic, and X's own outputs of a set-aside record all go."""
    app = _fan_out()
    with pytest.raises(TopologyError, match="topic 'orders' has already been registered"):
        app.processor("orders", name="y")(_audit)
    [source] = app.topology.sources  # the refused processor left nothing behind
    assert source.stores == ("n",)
    with TestDriver(app, partitions=1) as driver:
        driver.pipe("orders", "c", {"id": 1})
        driver.pipe("orders", "c", {"id": 2, "bad": True})  # stateful: abort, mark, replay
        driver.pipe("orders", "c", {"id": 3})
        assert [r.value for r in driver.output("counts", value_serde=J)] == [1, 2]
        assert [r.value["id"] for r in driver.output("copies", value_serde=J)] == [1, 3]
        [dead] = driver.output("fan-dlq", value_serde=J)
        assert dead.value["id"] == 2
        assert dict(dead.headers)["eokafka.processor"] == source.name.encode()
        aborted = driver.metric("eokafka_transactions_aborted_total", reason="poison-process")
        assert aborted == 1  # its count was taken back by an abort: the record was set aside


def test_eokafka_run_refuses_an_app_with_two_sources_of_a_topic() -> None:
    from typer.testing import CliRunner

    from eokafka.cli import cli

    target = "tests.apps.two_sources:app"
    result = CliRunner().invoke(cli, ["run", target, "--bootstrap-servers", "127.0.0.1:1"])
    assert result.exit_code == 1, result.output
    assert re.search(
        r"topic 'orders' has already been registered by another source: "
        r"processor 'stream > to\(copies\)' \(declared at \S*two_sources.py:8\).*"
        r"processor 'audit' \(declared at \S*two_sources.py:11\)",
        result.output,
    ), result.output
