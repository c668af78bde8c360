"""``on_error`` handlers under the TestDriver (the worker over in-memory clients).

The real-broker tests (tests/integration/test_error_handlers.py) cover every stage with real
worker processes; these check the handler's contract: what it is given, what it may answer,
where it applies, and that a handler that raises or answers nonsense stops the worker.
"""

from __future__ import annotations

from typing import Any

import pytest

import eokafka
from eokafka import serdes
from eokafka.errors import PoisonRecordError, TopologyError
from eokafka.on_error import DeadLetter, ErrorHandlerError
from eokafka.testing import TestDriver

S, J = serdes.String(), serdes.Json()
Seen = list[tuple[str, int, Any, str, str]]


def _app(on_error: Any, seen: Seen, per_processor: Any = None) -> eokafka.App:
    def handler(record: eokafka.Record, error: BaseException, stage: str) -> Any:
        seen.append((record.topic, record.offset, record.value, type(error).__name__, stage))
        return on_error(record, error, stage) if callable(on_error) else on_error

    app = eokafka.App("handler-unit", on_error=handler)

    @app.processor("in", key_serde=S, value_serde=J, on_error=per_processor)
    def divide(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
        ctx.send("out", key=record.key, value=1 / record.value["n"], value_serde=J)

    return app


def test_the_handler_sees_the_consumed_record_the_error_and_the_stage() -> None:
    seen: Seen = []
    with TestDriver(_app("skip", seen)) as driver:
        driver.pipe("in", "a", {"n": 0})
        driver.pipe("in", "b", b"{oops", value_serde=serdes.Bytes())
        driver.pipe("in", "c", {"n": 2})
        assert [r.value for r in driver.output("out", value_serde=J)] == [0.5]
    assert seen == [
        ("in", 0, b'{"n":0}', "ZeroDivisionError", "process"),
        ("in", 1, b"{oops", "SerdeError", "deserialize"),
    ]


def test_dead_letter_with_headers_of_the_handlers_own() -> None:
    verdict = DeadLetter(headers={"team": "billing", "raw": b"\x00"})
    with TestDriver(_app(verdict, [])) as driver:
        driver.pipe("in", "a", {"n": 0})
        [dead] = driver.output("handler-unit-dlq")
    headers = dict(dead.headers)
    assert headers["team"] == b"billing" and headers["raw"] == b"\x00"
    assert headers["eokafka.error.stage"] == b"process"
    assert headers["eokafka.error.class"] == b"ZeroDivisionError"
    assert dead.value == b'{"n":0}'


def test_a_processors_on_error_replaces_the_apps() -> None:
    seen: Seen = []
    with TestDriver(_app("dead-letter", seen, per_processor="skip")) as driver:
        driver.pipe("in", "a", {"n": 0})
        assert driver.output("handler-unit-dlq") == []
    assert seen == []  # the app's handler was not asked


def test_fail_from_a_handler_stops_the_worker_naming_the_record() -> None:
    with (
        TestDriver(_app("fail", [])) as driver,
        pytest.raises(PoisonRecordError, match=r"in\[0\]@0 \(process\): ZeroDivisionError"),
    ):
        driver.pipe("in", "a", {"n": 0})


def test_a_handler_that_raises_is_a_fatal_error_naming_the_handler() -> None:
    def broken(record: eokafka.Record, error: BaseException, stage: str) -> Any:
        raise LookupError("no rule for this")

    with TestDriver(_app(broken, [])) as driver, pytest.raises(ErrorHandlerError) as raised:
        driver.pipe("in", "a", {"n": 0})
    text = str(raised.value)
    assert "handler" in text and "in[0]@0 (process, handling ZeroDivisionError" in text
    assert "raised LookupError: no rule for this" in text
    assert __file__ in text  # the handler's own line, in its traceback


@pytest.mark.parametrize(
    "answer, said",
    [
        ("ignore", "returned 'ignore': expected one of fail, skip, dead-letter"),
        (None, "returned None"),
        (DeadLetter(headers={"eokafka.error.stage": "x"}), "are eokafka's own"),
        (DeadLetter(headers={"n": 1}), "give str or bytes"),  # type: ignore[dict-item]
    ],
)
def test_an_answer_that_is_no_verdict_is_a_fatal_error(answer: Any, said: str) -> None:
    with TestDriver(_app(answer, [])) as driver, pytest.raises(ErrorHandlerError, match=said):
        driver.pipe("in", "a", {"n": 0})


def test_stateful_records_dead_lettered_by_a_handler_leave_no_store_write() -> None:
    def handler(record: eokafka.Record, error: BaseException, stage: str) -> Any:
        return DeadLetter(headers={"why": stage})

    app = eokafka.App("handler-stateful")

    @app.processor("in", key_serde=S, value_serde=J, stores=["sums"], on_error=handler)
    def add(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
        sums = ctx.store("sums")
        sums.put(record.key, (sums.get(record.key) or 0) + record.value["n"])
        if record.value.get("bad"):
            raise ValueError("bad")

    with TestDriver(app) as driver:
        for n, bad in ((1, False), (10, True), (2, False)):
            driver.pipe("in", "k", {"n": n, "bad": bad})
        driver.commit()
        assert driver.store("sums", committed=True) == {"k": 3}
        [dead] = driver.output("handler-stateful-dlq")
        assert dict(dead.headers)["why"] == b"process"


def test_the_dsl_takes_a_handler_per_stream() -> None:
    app = eokafka.App("handler-dsl")
    app.stream("in", key_serde=S, value_serde=J, on_error=lambda r, e, s: "dead-letter").map_values(
        lambda v: 1 / v["n"]
    ).to("out", value_serde=J)
    with TestDriver(app) as driver:
        driver.pipe("in", "a", {"n": 0})
        driver.pipe("in", "b", {"n": 4})
        assert [r.value for r in driver.output("out", value_serde=J)] == [0.25]
        assert len(driver.output("handler-dsl-dlq")) == 1


@pytest.mark.parametrize("bad", ["ignore", 3])
def test_an_on_error_that_is_neither_word_nor_function_is_refused_at_once(bad: Any) -> None:
    with pytest.raises(TopologyError, match="choose one of fail, skip, dead-letter"):
        eokafka.App("x").processor("in", on_error=bad)


def test_an_apps_handler_stays_with_the_topology_not_the_settings() -> None:
    app = eokafka.App("x", on_error=lambda r, e, s: "skip")
    assert app.settings().on_error == "fail"  # the word for what no handler covers
    assert app.topology.on_error is not None
    assert app.topology.may_dead_letter("fail")


def test_describe_names_each_topics_handler() -> None:
    from typer.testing import CliRunner

    from eokafka.cli import cli

    done = CliRunner().invoke(cli, ["describe", "tests.apps.handler_apps:app"])
    assert done.exit_code == 0, done.output
    assert "handlers-counts-in: handler tests.apps.handler_apps.on_counts" in done.output
    assert "handlers-skip-in: skip" in done.output
    assert "handlers-dlq" in done.output  # a handler may dead-letter: the topic is shown


def test_text_keys_and_values_decode_as_their_string_serde_does() -> None:
    """Null, valid and invalid UTF-8 keys and values: None, the text, or String's own
    SerdeError for the handler (not a bare UnicodeDecodeError), in the key or the value."""
    seen: Seen = []

    def handler(record: eokafka.Record, error: BaseException, stage: str) -> Any:
        seen.append((record.topic, record.offset, str(error), type(error).__name__, stage))
        return "skip"

    app = eokafka.App("utf8-unit", on_error=handler)

    @app.processor("in", key_serde=S, value_serde=S)
    def echo(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
        ctx.send("out", key=repr(record.key), value=repr(record.value))

    with TestDriver(app) as driver:
        for key, value in [(None, None), (b"k\xc3\xa9", b"v"), (b"\xff", b"v"), (b"k", b"\xfe")]:
            driver.pipe("in", key, value, key_serde=serdes.Bytes(), value_serde=serdes.Bytes())
        got = [(r.key, r.value) for r in driver.output("out")]
    assert got == [(b"None", b"None"), (b"'k\xc3\xa9'", b"'v'")]
    assert seen == [
        ("in", 2, "String could not decode 1 byte: 'utf-8' codec can't decode byte 0xff in "
         "position 0: invalid start byte", "SerdeError", "deserialize"),
        ("in", 3, "String could not decode 1 byte: 'utf-8' codec can't decode byte 0xfe in "
         "position 0: invalid start byte", "SerdeError", "deserialize"),
    ]  # fmt: skip
