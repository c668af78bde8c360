"""The CLI pauses cyclic garbage collection while it starts a command and turns it back on
before the worker polls (or before any other command runs); a pause it did not make (an
embedding program's) is left alone."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from eokafka import cli, cli_run_start, startup_gc


@pytest.fixture(autouse=True)
def _collector_restored() -> Iterator[None]:
    yield
    startup_gc.resume()
    gc.unfreeze()
    gc.enable()


def test_a_pause_is_resumed_with_the_start_frozen() -> None:
    startup_gc.pause()
    assert not gc.isenabled()
    startup_gc.resume()
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0  # what the start built is never scanned again


def test_a_pause_made_elsewhere_is_left_alone() -> None:
    gc.disable()
    startup_gc.pause()
    startup_gc.resume()
    assert not gc.isenabled()


def test_eokafka_run_starts_with_collection_paused_and_ends_with_it_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[bool] = []

    def start(**_: Any) -> None:
        seen.append(gc.isenabled())

    monkeypatch.setattr(cli_run_start, "start", start)
    monkeypatch.setattr(sys, "argv", ["eokafka", "run", "some.module:app"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 0
    assert seen == [False]
    assert gc.isenabled()
