"""FileSource on real files: rotation, long and bad lines, positions (no broker needed).

A position goes through JSON between polls, as it does through Kafka, and a restart is a new
FileSource sought to the last position.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from connectors import file_tail
from connectors.file_source import BadSourceLine, FileSource
from eokafka.source import Read, Unreadable


def _lines(ids: range, pad: int = 0) -> bytes:
    return b"".join(json.dumps({"id": n, "pad": "x" * pad}).encode() + b"\n" for n in ids)


class Run:
    """A source over ``folder``, polled to the end; restarts from the last position."""

    def __init__(self, folder: Path, **kwargs: Any) -> None:
        self.folder = folder
        self.kwargs = kwargs
        self.position: Any = None
        self.bad: list[Unreadable] = []
        self.source = self._new()

    def _new(self) -> FileSource:
        source = FileSource("files", str(self.folder), **self.kwargs)
        source.open("app")
        source.seek(json.loads(json.dumps(self.position)))
        return source

    def restart(self) -> None:
        self.source.close()
        self.source = self._new()

    def ids(self, batch: int = 7) -> list[int]:
        out: list[int] = []
        while True:
            items, position = self.source.poll(batch)
            self.position = json.loads(json.dumps(position))
            if not items:
                return out
            for item in items:
                if isinstance(item, Unreadable):
                    self.bad.append(item)
                else:
                    assert isinstance(item, Read)
                    out.append(item.value["id"])


def test_rename_rotation_follows_the_renamed_file(tmp_path: Path) -> None:
    live = tmp_path / "events.jsonl"
    live.write_bytes(_lines(range(0, 10)))
    run = Run(tmp_path)
    assert run.ids() == list(range(10))
    with open(live, "ab") as f:
        f.write(_lines(range(10, 15)))  # not read before the rename
        os.rename(live, tmp_path / "events-1.jsonl")
        f.write(_lines(range(15, 20)))  # the writer has not reopened yet
    live.write_bytes(_lines(range(20, 23)))
    run.restart()
    assert sorted(run.ids()) == list(range(10, 23))


def test_copy_truncate_reads_the_new_content_from_its_start(tmp_path: Path) -> None:
    live = tmp_path / "events.jsonl"
    live.write_bytes(_lines(range(0, 100)))
    run = Run(tmp_path)
    assert run.ids() == list(range(100))
    shutil.copyfile(live, tmp_path / "events.jsonl.1")
    live.write_bytes(_lines(range(100, 400)))  # truncated, and past the old position at once
    assert run.ids() == list(range(100, 400))
    live.write_bytes(_lines(range(400, 410)))  # truncated below the position
    run.restart()
    assert run.ids() == list(range(400, 410))


def test_lines_of_any_length_and_too_long_ones(tmp_path: Path) -> None:
    long = 3 * file_tail.CHUNK
    (tmp_path / "a.jsonl").write_bytes(
        _lines(range(0, 2)) + _lines(range(2, 3), pad=long) + _lines(range(3, 5))
    )
    run = Run(tmp_path)
    assert run.ids() == list(range(5))
    (tmp_path / "b.jsonl").write_bytes(_lines(range(5, 6), pad=5000) + _lines(range(6, 8)))
    small = Run(tmp_path, max_line_bytes=4096)
    small.position = run.position
    small.restart()
    assert small.ids() == [6, 7]
    (bad,) = small.bad
    assert isinstance(bad.error, BadSourceLine) and "max_line_bytes=4096" in str(bad.error)
    assert dict(bad.origin.fields)["line"] == "1" and len(bad.raw) == 4096


def test_a_long_line_still_being_written_waits(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(_lines(range(0, 1)) + b'{"id": 1, "pad": "' + b"x" * (2 * file_tail.CHUNK))
    run = Run(tmp_path)
    assert run.ids() == [0]
    with open(path, "ab") as f:
        f.write(b'"}\n')
    assert run.ids() == [1]


def test_undecodable_and_invalid_lines_are_unreadable(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(
        _lines(range(0, 2)) + b'{"id": 99, "s": "\xff"}\r\n' + b"{nope\n\n" + _lines(range(2, 4))
    )
    run = Run(tmp_path)
    assert run.ids() == [0, 1, 2, 3]
    assert [b.raw for b in run.bad] == [b'{"id": 99, "s": "\xff"}', b"{nope"]
    assert [dict(b.origin.fields)["line"] for b in run.bad] == ["3", "4"]
    assert "utf-8" in str(run.bad[0].error)
    assert str(run.bad[0].origin).endswith("a.jsonl line 3 (byte 42)")


def test_same_names_in_two_folders_and_gone_files(tmp_path: Path) -> None:
    for sub, ids in (("a", range(0, 5)), ("b", range(5, 12))):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "events.jsonl").write_bytes(_lines(ids))
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "events.jsonl").write_bytes(_lines(range(90, 95)))
    run = Run(tmp_path, pattern="**/*.jsonl")
    assert sorted(run.ids()) == list(range(12))
    assert len(run.position["files"]) == 2
    (tmp_path / "b" / "events.jsonl").unlink()
    with open(tmp_path / "a" / "events.jsonl", "ab") as f:
        f.write(_lines(range(12, 14)))
    run.restart()
    assert run.ids() == [12, 13]
    assert len(run.position["files"]) == 1


def test_a_position_by_file_name_is_taken_over(tmp_path: Path) -> None:
    data = _lines(range(0, 10))
    (tmp_path / "a.jsonl").write_bytes(data + _lines(range(10, 12)))
    run = Run(tmp_path)
    run.position = {"files": {"a.jsonl": len(data)}}
    run.restart()
    assert run.ids() == [10, 11]
    assert run.position["v"] == 2
    run.restart()
    (tmp_path / "a.jsonl").write_bytes(data + b'{"id": 12}\n' + b"{bad\n")
    run.ids()
    assert dict(run.bad[0].origin.fields)["line"] == "12"


def test_csv_header_is_read_again_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id,amount\n1,10\n2,20\n")
    run = Run(tmp_path, format="csv")
    assert run.ids() == ["1", "2"]
    with open(path, "a") as f:
        f.write("3,30\n")
    run.restart()
    assert run.ids() == ["3"]


@pytest.mark.parametrize("opened", [False, True])
def test_close_in_any_state(tmp_path: Path, opened: bool) -> None:
    source = FileSource("files", str(tmp_path / "missing"))
    if opened:
        with pytest.raises(Exception, match="does not exist"):
            source.open("app")
    source.close()
    source.close()
