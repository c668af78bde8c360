"""What verify and repair know of a ``connectors.files.FileSink`` folder, in one place.

Part names, the rows and header of each format, and where the sink's in-progress parts
start all come from, or must match, ``connectors/files.py``; nothing else in
``eokafka.verify`` looks inside a FileSink folder. ``tests/unit/test_verify_fileparts.py``
runs a real FileSink and checks this module against the parts it leaves.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.file_parts import INPROGRESS, PartName, encode
from connectors.file_parts import fsync_dir as fsync_dir
from eokafka.errors import ConfigError
from eokafka.sink import Sink

if TYPE_CHECKING:
    from connectors.files import FileSink



@dataclass(frozen=True)
class PartWriter:
    """Rows and the header of one part format, written by a FileSink's own code."""

    format: str  # jsonl | csv
    columns: tuple[str, ...] = ()

    @cached_property
    def _sink(self) -> FileSink:
        from connectors.files import FileSink

        return FileSink("eokafka-repair", ".", format=self.format,  # type: ignore[arg-type]
                        columns=self.columns)

    def header(self) -> bytes:
        return self._sink._header()

    def row(self, value: object) -> bytes:
        """A record's row; raises TypeError (CSV needs an object) as the sink would."""
        return self._sink.row(value)

    @property
    def suffix(self) -> str:
        return f".{self.format}"


def part_name(app: str, topic: str, partition: int, first: int, end: int, format: str) -> str:
    """A finished part's name, as FileSink gives it: application ``app``'s records of input
    offsets ``first`` up to ``end`` (exclusive) of one partition."""
    return f"{encode(app)}+{topic}+{partition}+{first}-{end}.{format}"


def app_of(parts: list[Path]) -> str | None:
    """The application whose parts these are, if they are all one's (None: none, or two)."""
    from urllib.parse import unquote

    apps = {p.name.split("+", 1)[0] for p in parts if p.name.count("+") == 3}
    return unquote(apps.pop()) if len(apps) == 1 else None


def writer_of(path: Path) -> PartWriter:
    """The format of an existing part (a CSV part's columns from its header)."""
    if path.suffix == ".csv":
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
            header = next(csv.reader(f), None)
        if not header:
            raise ConfigError(f"CSV part {path} has no header line")
        return PartWriter("csv", tuple(header))
    return PartWriter("jsonl")


def writer_for_new_parts(folder: str, parts: list[Path], sink: FileSink | None) -> PartWriter:
    """The format new parts take: the app's FileSink's, else the one the parts share."""
    if sink is not None:
        return PartWriter(sink.format, sink.columns)
    formats = {p.suffix for p in parts}
    if len(formats) > 1:
        raise ConfigError(
            f"folder {folder} holds both JSON Lines and CSV parts: pass --app module:app so "
            "that the format of the app's FileSink is known"
        )
    if not parts:
        return PartWriter("jsonl")
    return writer_of(parts[-1])


def inprogress_starts(folder: str) -> dict[tuple[str, int], int]:
    """Per (topic, partition): the first input offset of the sink's in-progress parts.

    Their records, committed or not, are not visible yet: a check of the folder must not
    expect them, nor a repair write them again.
    """
    starts: dict[tuple[str, int], int] = {}
    for marks in sorted((Path(folder) / INPROGRESS).glob("*.marks")):
        name = PartName.parse(marks.stem)
        if name is None:
            continue
        first = _first_mark(marks)
        if first is not None:
            tp = (name.topic, name.partition)
            starts[tp] = min(first, starts.get(tp, first))
    return starts


def _first_mark(marks: Path) -> int | None:
    try:
        lines = marks.read_bytes().split(b"\n")
    except FileNotFoundError:
        return None  # finished meanwhile: its records are visible now
    for line in lines:
        try:
            mark = json.loads(line)
        except ValueError:
            break  # a torn last line
        if isinstance(mark, Mapping) and "first" in mark:
            return int(mark["first"])
    return None


def find_sink(sinks: Mapping[str, Sink], folder: str) -> FileSink | None:
    """The app's FileSink writing to ``folder``, if any."""
    from connectors.files import FileSink

    target = Path(folder).resolve()
    for sink in sinks.values():
        if isinstance(sink, FileSink) and sink.directory.resolve() == target:
            return sink
    return None
