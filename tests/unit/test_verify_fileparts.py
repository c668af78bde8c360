"""``eokafka.verify.fileparts`` against a real FileSink: the parts it names and finishes, the
rows it writes, the in-progress parts it leaves; and a repair's reading of a part."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.files import FileSink
from eokafka.errors import ConfigError
from eokafka.verify.fileparts import (
    PartWriter,
    app_of,
    inprogress_starts,
    part_name,
    writer_for_new_parts,
    writer_of,
)
from eokafka.verify.readers import files_side
from eokafka.verify.repair.files import records_of

VALUES = [{"id": 1, "amount": 2, "note": "a,b"}, {"id": 2, "amount": None, "note": "two\nlines"}]


def _sink(folder: Path, fmt: str, roll_seconds: float) -> FileSink:
    sink = FileSink("files", folder, format=fmt, columns=("id", "amount", "note"),  # type: ignore[arg-type]
                    roll_seconds=roll_seconds)
    sink.open("app", "worker-1")
    for offset, value in enumerate(VALUES, start=40):
        sink.add(("orders", 3, offset), sink.row(value))
    sink.prepare("txn-1", {("orders", 3): 42})
    return sink


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_finished_part_is_named_and_written_as_the_adapter_says(tmp_path: Path,
                                                                  fmt: str) -> None:
    sink = _sink(tmp_path, fmt, roll_seconds=0.0)
    sink.finish()  # rolls at once
    parts = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert [p.name for p in parts] == [part_name("app", "orders", 3, 40, 42, fmt)]
    writer = writer_of(parts[0]) if fmt == "csv" else PartWriter("jsonl")
    assert parts[0].read_bytes() == writer.header() + b"".join(map(writer.row, VALUES))
    assert writer_for_new_parts(str(tmp_path), parts, sink) == PartWriter(
        fmt, ("id", "amount", "note"))
    assert writer_for_new_parts(str(tmp_path), parts, None).format == fmt


def test_in_progress_parts_say_where_their_records_start(tmp_path: Path) -> None:
    sink = _sink(tmp_path, "jsonl", roll_seconds=3600.0)
    assert inprogress_starts(str(tmp_path)) == {("orders", 3): 40}
    sink.finish()  # committed, marked done, not rolled: still invisible
    assert inprogress_starts(str(tmp_path)) == {("orders", 3): 40}
    sink.close()  # a clean stop finishes it
    assert inprogress_starts(str(tmp_path)) == {}


def test_a_folder_of_both_formats_needs_the_app_for_new_parts(tmp_path: Path) -> None:
    (tmp_path / "a+0+0-1.jsonl").write_text("{}\n")
    (tmp_path / "a+1+0-1.csv").write_text("id\n1\n")
    with pytest.raises(ConfigError, match="--app"):
        writer_for_new_parts(str(tmp_path), sorted(tmp_path.iterdir()), None)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_repair_reads_a_part_as_verify_does_and_keeps_its_bytes(tmp_path: Path,
                                                                   suffix: str) -> None:
    path = tmp_path / f"t+0+0-9{suffix}"
    if suffix == ".csv":
        writer = PartWriter("csv", ("id", "amount", "note"))
        data = writer.header() + writer.row(VALUES[0]) + b"\n" + writer.row(VALUES[1]) \
            + b',1,"no\r\nid"\r\n' + b"3,4\n"
    else:
        data = b"".join(PartWriter("jsonl").row(v) for v in VALUES) + b"\n" + b"[1]\n" \
            + json.dumps({"id": 3}).encode()  # the last line without its newline
    path.write_bytes(data)
    pieces = list(records_of(path, "id"))
    assert b"".join(raw for _, raw, _ in pieces) == data
    verified = [(r.loc[1], r.id) for r in files_side(str(tmp_path), "id", []).reads]
    assert [(n, r.id) for n, _, r in pieces if r is not None] == verified
    assert [i for _, i in verified] == ["1", "2", None, "3" if suffix == ".jsonl" else None]


def test_the_application_of_a_folder_comes_from_its_part_names(tmp_path: Path) -> None:
    _sink(tmp_path, "jsonl", roll_seconds=0.0).finish()
    _sink(tmp_path, "jsonl", roll_seconds=0.0).finish()  # another run of the same app
    parts = sorted(p for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert app_of(parts) == "app"
    other = tmp_path / part_name("billing app", "orders", 3, 0, 1, "jsonl")
    other.write_text("{}\n")
    assert app_of([*parts, other]) is None  # two applications share the folder
    assert app_of([other]) == "billing app"
