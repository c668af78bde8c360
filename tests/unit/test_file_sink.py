"""FileSink on real files, driven as the worker drives it (no broker): a zombie's writes after
its successor's recovery, neighbours in one folder, closing from any state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.files import FileSink

TP = ("in", 0)


def _sink(folder: Path, app: str = "app", instance: str = "a", **kw: object) -> FileSink:
    sink = FileSink("files", folder, roll_bytes=1 << 30, roll_seconds=1e9, **kw)  # type: ignore[arg-type]
    sink.open(app, instance)
    return sink


def _txn(sink: FileSink, txn: str, offsets: range, commit: bool = True) -> None:
    for n in offsets:
        sink.add((*TP, n), sink.row({"id": n}))
    sink.prepare(txn, {TP: offsets.stop})
    if commit:
        sink.finish()


def _finished(folder: Path) -> dict[str, list[int]]:
    return {
        p.name: [json.loads(line)["id"] for line in p.read_text().splitlines()]
        for p in sorted(folder.glob("*.jsonl"))
    }


def test_a_zombie_writes_nothing_readers_see_after_its_successor_recovered(
    tmp_path: Path,
) -> None:
    zombie = _sink(tmp_path)
    _txn(zombie, "t1", range(0, 5))
    _txn(zombie, "t2", range(5, 8), commit=False)  # prepared; Kafka never commits it
    successor = _sink(tmp_path)  # same instance id, a later run
    assert successor.in_doubt({TP}, "a") == {"t2": {TP}}
    successor.resolve("t2", commit=False)
    assert _finished(tmp_path) == {"app+in+0+0-5.jsonl": [0, 1, 2, 3, 4]}
    # The zombie wakes up and goes on: its next Kafka commit fails (fenced).
    _txn(zombie, "t3", range(8, 10), commit=False)
    zombie.abort()
    zombie.close()
    assert _finished(tmp_path) == {"app+in+0+0-5.jsonl": [0, 1, 2, 3, 4]}
    _txn(successor, "s1", range(5, 9))
    assert successor.in_doubt({TP}, "a") == {"t3": {TP}}  # the zombie's new part
    successor.resolve("t3", commit=False)
    successor.close()
    assert _finished(tmp_path) == {
        "app+in+0+0-5.jsonl": [0, 1, 2, 3, 4],
        "app+in+0+5-9.jsonl": [5, 6, 7, 8],
    }
    assert not list((tmp_path / ".inprogress").iterdir())


def test_a_zombie_that_committed_finishes_nothing_twice(tmp_path: Path) -> None:
    """Stalled after its Kafka commit, before marking it done: the successor keeps the
    transaction; the zombie's own finishing then finds its part gone."""
    zombie = _sink(tmp_path)
    _txn(zombie, "t1", range(0, 5))
    _txn(zombie, "t2", range(5, 8), commit=False)
    successor = _sink(tmp_path)
    assert successor.in_doubt({TP}, "a") == {"t2": {TP}}
    successor.resolve("t2", commit=True)
    zombie.roll_seconds = 0
    zombie.finish()  # resumed: its commit of t2 had succeeded
    zombie.close()
    assert _finished(tmp_path) == {"app+in+0+0-8.jsonl": list(range(8))}
    assert not list((tmp_path / ".inprogress").iterdir())


def test_a_committed_last_transaction_is_kept_and_leftovers_go(tmp_path: Path) -> None:
    first = _sink(tmp_path, instance="a")
    _txn(first, "t1", range(0, 3))
    _txn(first, "t2", range(3, 6), commit=False)
    other = _sink(tmp_path, instance="b")  # gets the partition
    assert other.in_doubt({TP}, "b") == {"t2": {TP}}
    other.resolve("t2", commit=True)
    assert _finished(tmp_path) == {"app+in+0+0-6.jsonl": list(range(6))}
    assert not list((tmp_path / ".inprogress").iterdir())


def test_two_apps_in_one_folder_leave_each_other_alone(tmp_path: Path) -> None:
    one, two = _sink(tmp_path, app="one"), _sink(tmp_path, app="two")
    _txn(one, "t1", range(0, 3))
    _txn(two, "u1", range(0, 2))
    _txn(two, "u2", range(2, 4), commit=False)
    again = _sink(tmp_path, app="one")  # recovery of app one, same instance id
    assert again.in_doubt({TP}, "a") == {}
    assert _finished(tmp_path) == {"one+in+0+0-3.jsonl": [0, 1, 2]}
    two.close()  # its prepared part stays for its own recovery
    assert len(list((tmp_path / ".inprogress").glob("two+*"))) == 2


def test_ids_are_encoded_in_names(tmp_path: Path) -> None:
    sink = _sink(tmp_path, app="a+b/c*", instance="x+y")
    _txn(sink, "t1", range(0, 2))
    sink.close()
    assert list(_finished(tmp_path)) == ["a%2Bb%2Fc%2A+in+0+0-2.jsonl"]


def test_csv_parts_have_a_header(tmp_path: Path) -> None:
    sink = _sink(tmp_path, format="csv", columns=("id",))
    _txn(sink, "t1", range(0, 2))
    sink.close()
    (part,) = tmp_path.glob("*.csv")
    assert part.read_text() == "id\n0\n1\n"


@pytest.mark.parametrize("state", ["never-opened", "opened", "prepared", "aborted"])
def test_close_in_any_state(tmp_path: Path, state: str) -> None:
    sink = FileSink("files", tmp_path)
    if state != "never-opened":
        sink.open("app", "a")
    if state in ("prepared", "aborted"):
        _txn(sink, "t1", range(0, 2), commit=False)
    if state == "aborted":
        sink.abort()
    sink.close()
    sink.close()
    assert _finished(tmp_path) == {}
