"""The running-totals reference catches what a last-total check lets through."""

from __future__ import annotations

import json

import pytest

from tests.kafka_helpers import Record
from tests.totals_reference import check_running_totals

# Key a gets ids 0, 2, 3, 5; key b gets ids 1, 4.
KEYS = [b"a", b"b", b"a", b"a", b"b", b"a"]
INPUTS = [(k, json.dumps({"id": n, "amount": 1}).encode()) for n, k in enumerate(KEYS)]


def _outputs(emitted: list[tuple[bytes, int, int]]) -> list[Record]:
    """Records as read_committed returns them: ``(key, id, total)`` in offset order."""
    return [
        Record(0, offset, key, json.dumps({"id": n, "total": total}).encode(), [])
        for offset, (key, n, total) in enumerate(emitted)
    ]


def _applied(order: list[int], twice: int | None = None, lost: int | None = None) -> list:
    """What an app that applies ``order`` emits, double-applying and losing as asked."""
    running: dict[bytes, int] = {}
    emitted = []
    for n in order:
        key = KEYS[n]
        step = {twice: 2, lost: 0}.get(n, 1)
        running[key] = running.get(key, 0) + step
        emitted.append((key, n, running[key]))
    return _outputs(emitted)


def test_exact_outputs_pass_and_give_the_final_totals() -> None:
    assert check_running_totals(INPUTS, _applied(list(range(6)))) == {"a": 4, "b": 2}


def test_a_double_apply_cancelled_by_a_lost_one_on_the_same_key_fails() -> None:
    """Id 2 counted twice, id 3 not at all: key a's last total is still 4 and every id is
    emitted once, which is all a last-total check looks at."""
    planted = _applied(list(range(6)), twice=2, lost=3)
    assert json.loads(planted[-1].value)["total"] == 4  # the last total is right
    with pytest.raises(AssertionError, match="a: id 2 emitted 3, want 2"):
        check_running_totals(INPUTS, planted)


def test_a_double_apply_alone_fails() -> None:
    with pytest.raises(AssertionError, match="wrong running total"):
        check_running_totals(INPUTS, _applied(list(range(6)), twice=0))


def test_a_duplicate_or_a_missing_output_fails() -> None:
    outputs = _applied(list(range(6)))
    with pytest.raises(AssertionError, match="emitted more than once, e.g. ids \\[1\\]"):
        check_running_totals(INPUTS, outputs + [outputs[1]])
    with pytest.raises(AssertionError, match="never emitted, e.g. ids \\[4\\]"):
        check_running_totals(INPUTS, outputs[:4] + outputs[5:])


def test_inputs_of_one_stream_applied_out_of_order_fail() -> None:
    """Ids 2 and 3 of key a swapped: each total fits the order applied, not the input's."""
    with pytest.raises(AssertionError, match="out of their stream's order"):
        check_running_totals(INPUTS, _applied([0, 1, 3, 2, 4, 5]))


def test_two_streams_may_interleave_but_each_keeps_its_order() -> None:
    streams = ["t1", "t1", "t2", "t1", "t1", "t2"]  # key a: 0, 3 on t1; 2, 5 on t2
    interleaved = _applied([0, 2, 1, 5, 3, 4])  # t2's inputs first: still exact
    assert check_running_totals(INPUTS, interleaved, streams) == {"a": 4, "b": 2}
    with pytest.raises(AssertionError, match="out of their stream's order"):
        check_running_totals(INPUTS, _applied([0, 1, 5, 2, 3, 4]), streams)
