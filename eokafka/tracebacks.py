"""Tracebacks of the user's code, without the runtime's frames above it.

A processor that raises is called from deep inside the worker loop, and a ``module:app``
that fails to import is imported from inside the CLI: Python's own traceback would show
mostly eokafka (and typer) frames. What the user needs is their own frames, what those
called, and the one eokafka frame that called into them (the processor call, a DSL
operator), which says at which step it happened.

"Framework" frames are those of the ``eokafka`` package and of the ``connectors`` package
installed beside it; every other file is the user's code or a library it called.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from typing import Any

_EOKAFKA = os.path.dirname(os.path.abspath(__file__))
_FRAMEWORK = tuple(
    os.path.join(d, "") for d in (_EOKAFKA, os.path.join(os.path.dirname(_EOKAFKA), "connectors"))
)
Position = tuple[str, int, int]  # topic, partition, offset


def is_framework(filename: str) -> bool:
    """Whether a frame's file belongs to eokafka (or its connectors), not to the user."""
    return os.path.abspath(filename).startswith(_FRAMEWORK)


def shown_path(filename: str) -> str:
    """A file as the user would name it: relative to the current directory when inside it."""
    path = os.path.abspath(filename)
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _frames_from_user(
    stack: traceback.StackSummary, code: tuple[str, str] | None
) -> traceback.StackSummary | None:
    """The frames from the one that called the user's code on; None if none is the user's.

    ``code`` (file, function name) picks the user's processor where the framework calls it;
    otherwise the first frame outside the framework starts the user's code.
    """
    start = None
    if code is not None:
        start = next(
            (i for i, f in enumerate(stack) if (os.path.abspath(f.filename), f.name) == code),
            None,
        )
    if start is None:
        start = next((i for i, f in enumerate(stack) if not is_framework(f.filename)), None)
    if start is None:
        return None
    return traceback.StackSummary.from_list(stack[max(start - 1, 0) :])


def _trim(te: traceback.TracebackException, code: tuple[str, str] | None, seen: set[int]) -> bool:
    """Trim ``te`` and the exceptions it chains to; whether ``te`` has a user frame."""
    if id(te) in seen:
        return False
    seen.add(id(te))
    for chained in (te.__cause__, te.__context__):
        if chained is not None:
            _trim(chained, code, seen)
    frames = _frames_from_user(te.stack, code)
    if frames is None:
        te.stack = traceback.StackSummary.from_list(te.stack[-1:])
        return False
    te.stack = frames
    return True


def user_traceback(exc: BaseException, processor: Callable[..., Any] | None = None) -> str:
    """The traceback of ``exc`` from the eokafka frame that called the user's code on, and
    the exceptions it chains to, trimmed alike; "" when no frame of it is the user's (an
    error of eokafka itself, or of a connector, needs no traceback to be understood).

    ``processor`` is the function the runtime called, when the user wrote it.
    """
    fn_code = getattr(processor, "__code__", None)
    code = None
    if fn_code is not None and not is_framework(fn_code.co_filename):
        code = (os.path.abspath(fn_code.co_filename), fn_code.co_name)
    te = traceback.TracebackException.from_exception(exc)
    if not _trim(te, code, set()):
        return ""
    return "".join(te.format()).rstrip("\n")


class TracebackLog:
    """Hands out each record's traceback once.

    A record set aside by the poison policy reaches it again on every replay of its
    transaction, and an unrelated abort replays it too; its traceback is logged the first
    time only. Remembers the last ``limit`` records.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._seen: dict[Position, None] = {}  # insertion-ordered: the oldest goes first

    def suffix(
        self, record: Position, exc: BaseException, processor: Callable[..., Any] | None = None
    ) -> str:
        """A newline and the trimmed traceback, the first time ``record`` comes; else ""."""
        if record in self._seen:
            return ""
        self._seen[record] = None
        if len(self._seen) > self.limit:
            del self._seen[next(iter(self._seen))]
        text = user_traceback(exc, processor)
        return f"\n{text}" if text else ""
