"""File sink: JSON Lines or CSV part files that readers see only when Kafka committed them.

Layout of ``directory``:

* ``<topic>+<partition>+<first>-<end>.jsonl`` (or ``.csv``): finished part files, the
  records of input offsets ``first`` up to ``end`` (exclusive). Readers use only these.
* ``.inprogress/<topic>+<partition>+<instance>.jsonl``: the part file being written, and
  beside it ``.marks``, one JSON line per Kafka transaction that appended to it
  (``{"txn", "first", "end", "length"}``, fsynced with the data before the Kafka commit)
  and a ``{"done": txn}`` line once that commit succeeded.

A part file is finished (renamed into place, atomically) after a Kafka commit when it is
larger than ``roll_bytes`` or older than ``roll_seconds``, and whenever a worker takes over
its partition. Only the last transaction of a part file can be in doubt (a worker marks one
done before its next commit), so on recovery the committed offsets decide: kept if Kafka
committed that transaction, otherwise the file is cut back to the length of the one before.
A reader therefore never sees a partial record, or one twice.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from eokafka import faults
from eokafka.errors import ConfigError
from eokafka.sink import TP, Where

log = logging.getLogger("connectors.files")
Format = Literal["jsonl", "csv"]
_INPROGRESS = ".inprogress"


@dataclass
class _Part:
    """An in-progress part file of one partition, as this worker knows it."""

    path: Path
    first: int = -1
    created: float = field(default_factory=time.monotonic)
    rows: list[bytes] = field(default_factory=list)
    first_buffered: int = -1


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_marks(path: Path) -> list[dict[str, Any]]:
    """The marks of a part file; a torn last line (a kill while appending) is ignored."""
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            break
    return out


def _append_fsync(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


class FileSink:
    """Write record values as JSON Lines (or CSV rows with ``columns``) into ``directory``."""

    def __init__(
        self,
        name: str,
        directory: str | os.PathLike[str],
        *,
        format: Format = "jsonl",
        columns: Sequence[str] = (),
        roll_bytes: int = 64 * 1024 * 1024,
        roll_seconds: float = 300.0,
    ) -> None:
        if format not in ("jsonl", "csv"):
            raise ConfigError(f"FileSink {name!r}: format {format!r}: jsonl or csv")
        if format == "csv" and not columns:
            raise ConfigError(f"FileSink {name!r}: format='csv' needs columns=[...]")
        self.name = name
        self.keeps_offsets = False
        self.directory = Path(directory)
        self.format = format
        self.columns = tuple(columns)
        self.roll_bytes = roll_bytes
        self.roll_seconds = roll_seconds
        self._instance = ""
        self._parts: dict[TP, _Part] = {}
        self._prepared: list[tuple[TP, str]] = []

    def __repr__(self) -> str:
        return f"{self.format} files in {self.directory}"

    def open(self, application_id: str, instance_id: str) -> None:
        self._instance = instance_id
        (self.directory / _INPROGRESS).mkdir(parents=True, exist_ok=True)

    # -- rows ----------------------------------------------------------------------------

    def _header(self) -> bytes:
        if self.format != "csv":
            return b""
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow(self.columns)
        return out.getvalue().encode()

    def row(self, value: Any) -> bytes:
        if self.format == "jsonl":
            return (json.dumps(value, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        if not isinstance(value, Mapping):
            raise TypeError(f"sink {self.name}: a CSV row must be a mapping, not {type(value)}")
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow([value.get(c) for c in self.columns])
        return out.getvalue().encode()

    def _part(self, tp: TP) -> _Part:
        part = self._parts.get(tp)
        if part is None:
            topic, partition = tp
            name = f"{topic}+{partition}+{self._instance}.{self.format}"
            part = self._parts[tp] = _Part(self.directory / _INPROGRESS / name)
            # A part file this instance left before a restart, complete: append to it.
            kept = [m for m in _read_marks(part.path.with_suffix(".marks")) if "txn" in m]
            if kept and part.path.exists():
                part.first = kept[0]["first"]
        return part

    def add(self, where: Where, row: Any) -> None:
        part = self._part((where[0], where[1]))
        if not part.rows:
            part.first_buffered = where[2]
        part.rows.append(row)

    # -- the transaction -----------------------------------------------------------------

    def prepare(self, txn_id: str, offsets: Mapping[TP, int]) -> None:
        for tp, part in sorted(self._parts.items()):
            if not part.rows:
                continue
            marks = part.path.with_suffix(".marks")
            new = not part.path.exists()
            if new:
                part.first = part.first_buffered
                part.created = time.monotonic()
                _append_fsync(part.path, self._header())
            _append_fsync(part.path, b"".join(part.rows))
            part.rows.clear()
            faults.reached("files.after-fsync")
            length = part.path.stat().st_size
            mark = {"txn": txn_id, "first": part.first, "end": offsets[tp], "length": length}
            _append_fsync(marks, json.dumps(mark).encode() + b"\n")
            if new:
                _fsync_dir(part.path.parent)
            self._prepared.append((tp, txn_id))
            faults.reached("files.after-prepare")

    def finish(self) -> None:
        """Kafka committed: mark each part's transaction done; roll the parts due."""
        for tp, txn_id in self._prepared:
            faults.reached("files.before-done")
            part = self._parts[tp]
            done = json.dumps({"done": txn_id}).encode() + b"\n"
            _append_fsync(part.path.with_suffix(".marks"), done)
        self._prepared.clear()
        now = time.monotonic()
        for part in list(self._parts.values()):
            if not part.path.exists():
                continue
            big = part.path.stat().st_size >= self.roll_bytes
            if big or now - part.created >= self.roll_seconds:
                self._finalize(part.path, _read_marks(part.path.with_suffix(".marks")))

    def abort(self) -> None:
        """Drop the buffers; appended but uncommitted bytes are cut back by recovery."""
        self._prepared.clear()
        for part in self._parts.values():
            part.rows.clear()

    # -- finishing, recovery -------------------------------------------------------------

    def _finalize(self, path: Path, marks: list[dict[str, Any]]) -> None:
        """Rename a part file (already cut to its committed length) to its final name."""
        kept = [m for m in marks if "txn" in m]
        marks_path = path.with_suffix(".marks")
        if kept and path.exists():
            topic, partition, _ = path.stem.split("+")
            last = kept[-1]
            name = f"{topic}+{partition}+{last['first']}-{last['end']}.{self.format}"
            final = self.directory / name
            os.replace(path, final)
            faults.reached("files.mid-rename")
            _fsync_dir(self.directory)
        else:
            path.unlink(missing_ok=True)
        marks_path.unlink(missing_ok=True)
        _fsync_dir(path.parent)
        for tp, part in list(self._parts.items()):
            if part.path == path:
                del self._parts[tp]

    def _inprogress(self) -> list[tuple[Path, TP, str]]:
        folder = self.directory / _INPROGRESS
        stems = {p.stem for p in folder.glob("*.marks")} | {
            p.stem for p in folder.glob(f"*.{self.format}")
        }
        out = []
        for stem in sorted(stems):
            topic, partition, instance = stem.split("+")
            out.append((folder / f"{stem}.{self.format}", (topic, int(partition)), instance))
        return out

    def in_doubt(self, partitions: set[TP], instance_id: str) -> dict[str, set[TP]]:
        """Part files whose last transaction is undecided; others found here are finished.

        A part file of another instance for a partition this worker now owns, complete
        (its last transaction done), is finished at once so that its records become visible.
        """
        doubts: dict[str, set[TP]] = {}
        for path, tp, instance in self._inprogress():
            if tp not in partitions and instance != instance_id:
                continue
            marks = _read_marks(path.with_suffix(".marks"))
            if not path.exists():
                path.with_suffix(".marks").unlink(missing_ok=True)  # finished before a kill
                continue
            last = marks[-1] if marks else None
            if last is not None and "txn" in last:
                doubts.setdefault(last["txn"], set()).add(tp)
            elif instance != instance_id or tp not in partitions:
                self._cut(path, marks)
            else:
                self._trim(path, marks)  # bytes appended by a transaction that never prepared
        return doubts

    def _trim(self, path: Path, marks: list[dict[str, Any]]) -> None:
        kept = [m for m in marks if "txn" in m]
        if not kept:
            path.unlink(missing_ok=True)
            path.with_suffix(".marks").unlink(missing_ok=True)
            return
        if path.stat().st_size > kept[-1]["length"]:
            with open(path, "r+b") as f:
                f.truncate(kept[-1]["length"])
                os.fsync(f.fileno())

    def resolve(self, txn_id: str, commit: bool) -> None:
        for path, _tp, _instance in self._inprogress():
            marks = _read_marks(path.with_suffix(".marks"))
            if not marks or marks[-1].get("txn") != txn_id:
                continue
            if not commit:
                marks = marks[:-1]
            self._cut(path, marks)

    def _cut(self, path: Path, marks: list[dict[str, Any]]) -> None:
        """Truncate a part file to its last kept transaction, then finish it."""
        kept = [m for m in marks if "txn" in m]
        if kept and path.exists():
            self._trim(path, kept)
        self._finalize(path, kept)

    def positions(self, partitions: set[TP]) -> dict[TP, int]:
        return {}

    def close(self) -> None:
        """After a clean stop (nothing in doubt): finish this instance's part files."""
        for path, _tp, instance in self._inprogress():
            marks = _read_marks(path.with_suffix(".marks"))
            if instance == self._instance and path.exists() and marks and "done" in marks[-1]:
                self._finalize(path, marks)
        self._parts.clear()
