"""A processor's exception is logged with the traceback of the user's code, and only that.

The worker runs the app's code under the TestDriver (the worker's own code over in-memory
clients); the traceback must show this file's lines and the one eokafka frame that called
them, once per record, and be part of the fatal error under ``on_error="fail"``.
"""

from __future__ import annotations

import logging
import re
import sys

import pytest

import eokafka
from eokafka import serdes
from eokafka.errors import PoisonRecordError
from eokafka.testing import TestDriver
from eokafka.tracebacks import TracebackLog, user_traceback

S, J = serdes.String(), serdes.Json()
HERE = __file__


def _ratio(value: dict) -> float:
    return 1 / value["n"]  # the line the tracebacks must name


RAISE_LINE = _ratio.__code__.co_firstlineno + 1


def _plain_app(on_error: str, stores: list[str] | None = None) -> eokafka.App:
    app = eokafka.App("tb-plain", on_error=on_error)

    @app.processor("in", key_serde=S, value_serde=J, stores=stores or [])
    def enrich(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
        if stores:
            ctx.store(stores[0]).put(record.key, 1)
        ctx.send("out", key=record.key, value=_ratio(record.value), value_serde=J)

    return app


def _frames(text: str) -> list[str]:
    return re.findall(r'^  File "([^"]+)", line (\d+)', text, re.MULTILINE)


def _eokafka_frames(text: str) -> list[str]:
    return [f for f, _ in _frames(text) if "/eokafka/" in f]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("on_error", ["skip", "dead-letter"])
@pytest.mark.parametrize("stores", [None, ["seen"]], ids=["stateless", "stateful"])
def test_a_processor_exception_logs_the_users_traceback_once(
    caplog: pytest.LogCaptureFixture, on_error: str, stores: list[str] | None
) -> None:
    caplog.set_level(logging.WARNING)
    with TestDriver(_plain_app(on_error, stores), partitions=1) as driver:
        driver.pipe("in", "a", {"n": 1})
        driver.pipe("in", "b", {"n": 0})  # ZeroDivisionError
        driver.pipe("in", "c", {"n": 2})
        driver.abort()  # an unrelated abort replays nothing committed: no second traceback
        driver.pipe("in", "d", {"n": 4})
        assert [r.key for r in driver.output("out", key_serde=S, value_serde=J)] == ["a", "c", "d"]
    traced = [m for m in _warnings(caplog) if "Traceback (most recent call last)" in m]
    assert len(traced) == 1, _warnings(caplog)
    text = traced[0]
    assert "in[0]@1" in text and "ZeroDivisionError: division by zero" in text
    assert (HERE, str(RAISE_LINE)) in _frames(text)
    # The runtime's frames above the user's code are cut to the one that called it.
    assert _eokafka_frames(text) == [_frames(text)[0][0]]
    assert _eokafka_frames(text)[0].endswith("eokafka/runtime/tasks/process.py")


def test_under_fail_the_traceback_is_in_the_fatal_message() -> None:
    with TestDriver(_plain_app("fail"), partitions=1) as driver:
        with pytest.raises(PoisonRecordError) as raised:
            driver.pipe("in", "b", {"n": 0})
    text = str(raised.value)
    assert text.startswith("poison record at in[0]@0 (process): ZeroDivisionError")
    assert (HERE, str(RAISE_LINE)) in _frames(text)
    assert len(_eokafka_frames(text)) == 1


def test_a_dsl_lambda_is_traced_from_the_operator_that_called_it() -> None:
    app = eokafka.App("tb-dsl")
    app.stream("in", key_serde=S, value_serde=J).map_values(
        lambda v: _ratio(v)  # noqa: PLW0108 - the lambda is the user frame under test
    ).to("out", key_serde=S, value_serde=J)
    with TestDriver(app, partitions=1) as driver:
        with pytest.raises(PoisonRecordError) as raised:
            driver.pipe("in", "b", {"n": 0})
    text = str(raised.value)
    frames = _frames(text)
    assert frames[0][0].endswith("eokafka/dsl/operators.py")
    assert (HERE, str(RAISE_LINE)) in frames
    assert len(_eokafka_frames(text)) == 1


def test_an_error_of_eokafka_itself_gets_no_traceback() -> None:
    with TestDriver(_plain_app("fail"), partitions=1) as driver:
        with pytest.raises(PoisonRecordError) as raised:
            driver.pipe("in", "b", b"{not json", value_serde=serdes.Bytes())
    assert str(raised.value).startswith("poison record at in[0]@0 (deserialize): SerdeError")
    assert "Traceback" not in str(raised.value)


def test_the_named_processor_starts_the_trace_and_chained_errors_are_trimmed_too() -> None:
    def processor(value: dict) -> float:
        try:
            return _ratio(value)
        except ZeroDivisionError as exc:
            raise ValueError("bad ratio") from exc

    try:
        processor({"n": 0})
    except ValueError as exc:
        text = user_traceback(exc, processor)
    starts = [line for line in text.splitlines() if line.startswith("Traceback")]
    assert len(starts) == 2  # the cause, then the error
    assert "The above exception was the direct cause" in text
    assert text.rstrip().endswith("ValueError: bad ratio")
    # The cause's frames run from the processor; the error's from this test, which called
    # the processor (kept as "the frame that called" it).
    names = re.findall(r", in (\w+)$", text, re.MULTILINE)
    assert names == ["processor", "_ratio", sys._getframe().f_code.co_name, "processor"]


def test_each_record_gets_its_traceback_once() -> None:
    log = TracebackLog(limit=2)
    try:
        _ratio({"n": 0})
    except ZeroDivisionError as exc:
        error = exc
    first = log.suffix(("t", 0, 5), error)
    assert first.startswith("\nTraceback") and f"line {RAISE_LINE}" in first
    assert log.suffix(("t", 0, 5), error) == ""
    log.suffix(("t", 0, 6), error)
    log.suffix(("t", 0, 7), error)  # the oldest, offset 5, is forgotten
    assert log.suffix(("t", 0, 5), error) != ""
