"""File source: the records of a folder of JSON Lines or CSV files into a Kafka topic.

Files matching ``pattern`` are read in name order, new files picked up as they appear, and
appended lines as they are completed: a line counts only once its newline is written, so a
writer may append to a file while it is read. The position is the byte offset reached in
each file, committed to Kafka with the records (see ``eokafka.runtime.process.sources``).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Literal

from eokafka import faults
from eokafka.errors import ConfigError, EokafkaError


class BadSourceLine(EokafkaError):
    """A complete line of a source file that is not valid JSON (or CSV); names file and byte."""


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
    ) -> None:
        if format not in ("jsonl", "csv"):
            raise ConfigError(f"FileSource {name!r}: format {format!r}: jsonl or csv")
        self.name = name
        self.directory = Path(directory)
        self.format = format
        self.pattern = pattern or f"*.{format}"
        self.key_field = key_field
        self._at: dict[str, int] = {}  # file name -> bytes consumed
        self._headers: dict[str, list[str]] = {}

    def __repr__(self) -> str:
        return f"{self.format} files {self.directory / self.pattern}"

    def open(self, application_id: str) -> None:
        if not self.directory.is_dir():
            raise ConfigError(f"FileSource {self.name!r}: folder {self.directory} does not exist")

    def seek(self, position: Any) -> None:
        self._at = dict((position or {}).get("files", {}))
        self._headers.clear()

    def poll(self, max_records: int) -> tuple[list[tuple[Any, Any]], Any]:
        faults.reached("file-source.poll")
        out: list[tuple[Any, Any]] = []
        for path in sorted(self.directory.glob(self.pattern)):
            if len(out) >= max_records:
                break
            if path.name.startswith(".") or not path.is_file():
                continue
            out += self._read(path, max_records - len(out))
        return out, {"files": dict(self._at)}

    def _read(self, path: Path, limit: int) -> list[tuple[Any, Any]]:
        start = self._at.get(path.name, 0)
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(1 << 20)
        end = data.rfind(b"\n") + 1  # complete lines only
        out: list[tuple[Any, Any]] = []
        at = start
        for line in data[:end].splitlines(keepends=True):
            if len(out) >= limit:
                break
            where = at
            at += len(line)
            text = line.decode("utf-8").rstrip("\r\n")
            if not text.strip():
                continue
            if self.format == "csv" and where == 0:
                self._headers[path.name] = next(csv.reader([text]))
                continue
            out.append(self._record(path, where, text))
        self._at[path.name] = at
        return out

    def _record(self, path: Path, where: int, text: str) -> tuple[Any, Any]:
        try:
            if self.format == "jsonl":
                value = json.loads(text)
            else:
                header = self._headers.get(path.name)
                if header is None:
                    with open(path, encoding="utf-8", newline="") as f:
                        header = self._headers[path.name] = next(csv.reader(f))
                value = dict(zip(header, next(csv.reader(io.StringIO(text))), strict=False))
        except (ValueError, StopIteration) as exc:
            raise BadSourceLine(f"source {self.name}: {path} at byte {where}: {exc}") from exc
        key = value.get(self.key_field) if self.key_field and isinstance(value, dict) else None
        return (None if key is None else str(key)), value

    def close(self) -> None:
        self._headers.clear()
