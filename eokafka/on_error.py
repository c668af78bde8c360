"""What becomes of a record that can't be processed or sent: ``on_error``, per app or processor.

``on_error`` is one of three words, or a handler the app's code gives:

* ``"fail"`` stops the worker, naming the record (nothing after it is committed);
* ``"skip"`` counts and logs the record and goes on;
* ``"dead-letter"`` sends the record's original bytes to ``<application id>-dlq`` in the same
  transaction, with headers naming the fault;
* a handler ``fn(record, error, stage)`` returns one of the three words, or
  ``DeadLetter(headers={...})`` to dead-letter with headers of its own beside eokafka's.

The handler sees the input record as consumed (``record.key`` and ``record.value`` are its
bytes: a record that can't be deserialized has no other), the exception, and the stage:
``deserialize``, ``process``, ``produce`` (an output the producer or broker refused) or
``sink`` (a sink outside Kafka refused its row). It may run more than once for one record
(a transaction that aborts is replayed), so it should decide from its arguments alone. A
handler that raises, or returns anything else, stops the worker with an error naming the
record, the stage and the handler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from eokafka.errors import EokafkaError, TopologyError
from eokafka.record import HEADER_PREFIX, Record
from eokafka.tracebacks import user_traceback

Action = Literal["fail", "skip", "dead-letter"]
ACTIONS: tuple[str, ...] = get_args(Action)
STAGES = ("deserialize", "process", "produce", "sink")


@dataclass(frozen=True)
class DeadLetter:
    """The verdict *dead-letter*, with headers added after eokafka's own (str values are
    UTF-8 encoded). Names starting with ``eokafka.`` are eokafka's and refused."""

    headers: Mapping[str, str | bytes] = field(default_factory=dict)


Verdict = Action | DeadLetter
ErrorHandler = Callable[[Record, BaseException, str], Verdict]
OnError = Action | ErrorHandler


class ErrorHandlerError(EokafkaError):
    """An ``on_error`` handler raised, or returned something that is no verdict."""


def check_on_error(on_error: object, where: str) -> None:
    """Refuse, when the app is declared, an ``on_error`` that is neither a word nor callable."""
    if isinstance(on_error, str) and on_error in ACTIONS:
        return
    if callable(on_error) and not isinstance(on_error, str):
        return
    raise TopologyError(
        f"{where}: on_error={on_error!r}: choose one of {', '.join(ACTIONS)}, or give a "
        "function (record, error, stage) -> one of them or DeadLetter(headers=...)"
    )


def handler_name(handler: ErrorHandler) -> str:
    module = getattr(handler, "__module__", None)
    name = getattr(handler, "__qualname__", None) or type(handler).__name__
    return f"{module}.{name}" if module else name


def shown(on_error: OnError) -> str:
    """``on_error`` as ``eokafka describe`` shows it: the word, or the handler's name."""
    return on_error if isinstance(on_error, str) else f"handler {handler_name(on_error)}"


def decide(
    handler: ErrorHandler, record: Record, error: BaseException, stage: str
) -> tuple[Action, list[tuple[str, bytes]]]:
    """The handler's verdict on ``record``: the action and the dead letter's extra headers."""
    at = f"{record.topic}[{record.partition}]@{record.offset}"
    what = f"the on_error handler {handler_name(handler)} at {at} ({stage}, handling "
    what += f"{type(error).__name__}: {error})"
    try:
        verdict = handler(record, error, stage)
    except Exception as exc:
        trace = user_traceback(exc)
        raise ErrorHandlerError(
            f"{what} raised {type(exc).__name__}: {exc}" + (f"\n{trace}" if trace else "")
        ) from exc
    if isinstance(verdict, DeadLetter):
        return "dead-letter", _headers(verdict.headers, what)
    if isinstance(verdict, str) and verdict in ACTIONS:
        return verdict, []  # type: ignore[return-value]  # checked against ACTIONS
    raise ErrorHandlerError(
        f"{what} returned {verdict!r}: expected one of {', '.join(ACTIONS)} or DeadLetter(...)"
    )


def _headers(headers: Mapping[str, str | bytes], what: str) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for name, value in headers.items():
        if not isinstance(name, str) or name.startswith(HEADER_PREFIX):
            raise ErrorHandlerError(
                f"{what} returned a dead-letter header {name!r}: names starting with "
                f"{HEADER_PREFIX!r} are eokafka's own"
            )
        if isinstance(value, str):
            value = value.encode()
        if not isinstance(value, bytes):
            raise ErrorHandlerError(
                f"{what} returned dead-letter header {name!r} = {value!r}: give str or bytes"
            )
        out.append((name, value))
    return out
