"""File source: the records of a folder of JSON Lines or CSV files into a Kafka topic.

Files matching ``pattern`` (``**`` for sub-folders; hidden files and folders are left out)
are read in name order, new files picked up as they appear, and appended lines as they are
completed: a line counts only once its newline is written, so a writer may append to a file
while it is read. Files are followed through rotation by identity (connectors/file_tail.py):

* rename (``events.jsonl`` -> ``events-1.jsonl``, a new ``events.jsonl``): the renamed file
  is read on to its end, the new one from its start; the rotated names must match
  ``pattern`` too, or lines not read before the rename are not read;
* copy-truncate: a file truncated (or rewritten in place) is read again from its start.
  Lines written after the source's last read and before the truncation are only in the
  copy, which must not match ``pattern`` (it would be read as a new file).

The position is, per file identity, the bytes and lines consumed and a digest of the first
bytes, committed to Kafka with the records (see ``eokafka.runtime.process.sources``); files
that are gone leave it. A line that is not UTF-8, not JSON (or CSV), or longer than
``max_line_bytes`` is returned as ``Unreadable`` with a :class:`BadSourceLine`, for the app's
``on_error`` policy.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from connectors.file_tail import (
    HEAD,
    Ident,
    Line,
    Tail,
    head_digest,
    ident_key,
    parse_ident,
    read_lines,
    scan,
)
from eokafka import faults
from eokafka.errors import ConfigError, EokafkaError
from eokafka.source import Origin, Read, SourceItem, Unreadable

log = logging.getLogger("connectors.file_source")
_NO_HEADER: list[str] = []


class BadSourceLine(EokafkaError):
    """Why a complete line of a source file can't be a record (its origin names the line)."""


class FileSource:
    """Read ``directory/pattern`` files; ``key_field`` (optional) gives each record's key."""

    def __init__(
        self,
        name: str,
        directory: str,
        *,
        format: Literal["jsonl", "csv"] = "jsonl",
        pattern: str | None = None,
        key_field: str | None = None,
        max_line_bytes: int = 16 << 20,
    ) -> None:
        if format not in ("jsonl", "csv"):
            raise ConfigError(f"FileSource {name!r}: format {format!r}: jsonl or csv")
        if max_line_bytes < HEAD:
            raise ConfigError(f"FileSource {name!r}: max_line_bytes={max_line_bytes} < {HEAD}")
        self.name = name
        self.directory = Path(directory)
        self.format = format
        self.pattern = pattern or f"*.{format}"
        self.key_field = key_field
        self.max_line_bytes = max_line_bytes
        self._tails: dict[Ident, Tail] = {}  # files read into, by identity
        self._by_name: dict[str, int] | None = None  # a position of old (name -> bytes)
        self._headers: dict[Ident, list[str]] = {}

    def __repr__(self) -> str:
        return f"{self.format} files {self.directory / self.pattern}"

    def open(self, application_id: str) -> None:
        if not self.directory.is_dir():
            raise ConfigError(f"FileSource {self.name!r}: folder {self.directory} does not exist")

    def seek(self, position: Any) -> None:
        position = position or {}
        files = position.get("files", {})
        self._headers.clear()
        if position.get("v") == 2:
            self._tails = {parse_ident(k): Tail.from_json(v) for k, v in files.items()}
            self._by_name = None
        else:  # bytes by file name, as positions were first stored: resolved at the next scan
            self._tails, self._by_name = {}, dict(files)

    def poll(self, max_records: int) -> tuple[list[SourceItem], Any]:
        faults.reached("file-source.poll")
        found = scan(self.directory, self.pattern)
        if self._by_name is not None:
            self._adopt_names(found)
        for gone in self._tails.keys() - found.keys():
            del self._tails[gone]
            self._headers.pop(gone, None)
        out: list[SourceItem] = []
        for ident, (path, size) in sorted(found.items(), key=lambda item: item[1][0]):
            if len(out) >= max_records:
                break
            if size != self._tails.get(ident, Tail()).at:
                out += self._read(ident, path, max_records - len(out))
        position = {"v": 2, "files": {ident_key(i): t.to_json() for i, t in self._tails.items()}}
        return out, position

    def _adopt_names(self, found: dict[Ident, tuple[Path, int]]) -> None:
        """Positions by name (stored before files were known by identity): the file that
        has the name now is taken to be the one read."""
        by_name, self._by_name = self._by_name or {}, None
        for ident, (path, _) in found.items():
            at = by_name.get(path.name)
            if not at:
                continue
            with open(path, "rb") as f:
                data = f.read(at)
                self._tails[ident] = Tail(at, data.count(b"\n"), head_digest(f.fileno(), at))

    def _read(self, ident: Ident, path: Path, limit: int) -> list[SourceItem]:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return []  # rotated away since the scan: the next scan finds it
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != ident:
                return []  # another file took the name since the scan
            tail = self._tails.get(ident, Tail())
            if not tail.still_there(fd, st.st_size):
                log.info(
                    "source %s: %s was truncated or rewritten (%d bytes, %d were read): "
                    "reading it again from its start", self.name, path, st.st_size, tail.at,
                )  # fmt: skip
                tail = Tail()
                self._headers.pop(ident, None)
            lines, end = read_lines(fd, tail.at, limit, self.max_line_bytes)
            out = []
            for n, line in enumerate(lines, tail.line + 1):
                item = self._item(fd, ident, path, n, line)
                if item is not None:
                    out.append(item)
            tail = tail.after(fd, end, len(lines))
            if tail.at:
                self._tails[ident] = tail
            else:
                self._tails.pop(ident, None)
            return out
        finally:
            os.close(fd)

    def _item(self, fd: int, ident: Ident, path: Path, n: int, line: Line) -> SourceItem | None:
        origin = Origin(self.name, (("file", str(path)), ("line", str(n)),
                                    ("byte", str(line.start))))  # fmt: skip
        raw = line.data[:-1] if line.data.endswith(b"\r") and not line.too_long else line.data
        if line.too_long:
            return self._bad(raw, origin, f"longer than max_line_bytes={self.max_line_bytes}")
        if not raw.strip():
            return None
        try:
            text = raw.decode("utf-8")
            if self.format == "jsonl":
                value = json.loads(text)
            else:
                if line.start == 0:
                    self._headers[ident] = _NO_HEADER
                    self._headers[ident] = _csv_row(text)
                    return None
                header = self._header(fd, ident)
                if header is _NO_HEADER:
                    raise ValueError("the file's header line can't be read")
                value = dict(zip(header, _csv_row(text), strict=False))
        except (ValueError, csv.Error) as exc:
            return self._bad(raw, origin, str(exc))
        key = value.get(self.key_field) if self.key_field and isinstance(value, dict) else None
        return Read(None if key is None else str(key), value, origin)

    def _bad(self, raw: bytes, origin: Origin, why: str) -> Unreadable:
        return Unreadable(raw, origin, BadSourceLine(why))

    def _header(self, fd: int, ident: Ident) -> list[str]:
        header = self._headers.get(ident)
        if header is None:
            first, _ = read_lines(fd, 0, 1, self.max_line_bytes)
            header = _NO_HEADER
            if first and not first[0].too_long:
                try:
                    header = _csv_row(first[0].data.decode("utf-8").rstrip("\r"))
                except (ValueError, csv.Error):
                    pass
            self._headers[ident] = header
        return header

    def close(self) -> None:
        """Nothing is held open between polls; safe in any state."""
        self._headers.clear()


def _csv_row(text: str) -> list[str]:
    try:
        return next(csv.reader(io.StringIO(text)))
    except StopIteration:
        raise ValueError("an empty CSV row") from None
