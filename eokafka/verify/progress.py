"""Progress of long verify and repair runs: a rich progress bar on a terminal, else nothing.

Readers and repairs report through :class:`Progress`; only the command decides whether a bar
is drawn (stderr is a terminal, no ``--json``, no ``--follow``), so the library stays quiet.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

T = TypeVar("T")
_EVERY = 1000  # records between two updates of a bar


class Step(Protocol):
    """One phase of a run (reading a side, fetching records, applying a repair)."""

    def advance(self, n: int = 1) -> None: ...

    def finish(self) -> None: ...


class Progress(Protocol):
    def step(self, what: str, total: int | None) -> Step: ...


class _NoStep:
    def advance(self, n: int = 1) -> None:
        return None

    def finish(self) -> None:
        return None


class NoProgress:
    """Reports nothing (scripts, tests, ``--json``, ``--follow``)."""

    def step(self, what: str, total: int | None) -> Step:
        return _NoStep()


NO_PROGRESS = NoProgress()


def tracked(items: Iterable[T], progress: Progress, what: str, total: int | None) -> Iterator[T]:
    """``items``, advancing a step of ``progress`` every thousand of them."""
    step = progress.step(what, total)
    n = 0
    try:
        for item in items:
            n += 1
            if n == _EVERY:
                step.advance(n)
                n = 0
            yield item
        step.advance(n)
    finally:
        step.finish()


class _RichStep:
    def __init__(self, bar: object, task: int) -> None:
        from rich.progress import Progress as RichBar

        assert isinstance(bar, RichBar)
        self._bar = bar
        self._task = task

    def advance(self, n: int = 1) -> None:
        self._bar.advance(self._task, n)

    def finish(self) -> None:
        task = self._bar.tasks[self._task]
        self._bar.update(self._task, total=task.completed)


class RichProgress(AbstractContextManager["RichProgress"]):
    """A bar per step on stderr (rich, which typer brings), removed when the run ends."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as RichBar

        self._bar = RichBar(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )

    def __enter__(self) -> RichProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def step(self, what: str, total: int | None) -> Step:
        return _RichStep(self._bar, self._bar.add_task(what, total=total))
