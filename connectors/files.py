"""File sink: JSON Lines or CSV part files that readers see only when Kafka committed them.

Layout of ``directory`` (names in connectors/file_parts.py):

* ``<app>+<topic>+<partition>+<first>-<end>.jsonl`` (or ``.csv``): finished part files, the
  records of input offsets ``first`` up to ``end`` (exclusive). Readers use only these.
* ``.inprogress/<app>+<topic>+<partition>+<instance>+<session>.jsonl``: a part being written,
  and beside it ``.marks``, one JSON line per Kafka transaction that appended to it
  (``{"txn", "first", "end", "length"}``, fsynced with the data before the Kafka commit)
  and a ``{"done": txn}`` line once that commit succeeded.

A part is finished after a Kafka commit when it is larger than ``roll_bytes`` or older than
``roll_seconds``, when its partition is assigned (again), after an abort, and on a clean
stop. Only the last transaction of a part can be in doubt (a worker marks one done before
its next commit), so on recovery the committed offsets decide: kept if Kafka committed that
transaction, otherwise the part is cut back to the length of the one before. A reader
therefore never sees a partial record, or one twice.

Zombies: a part is written through the descriptors opened when it was created, never
reopened by path, and a worker finishes another worker's part by copying its committed
bytes into a new file (file_parts.py). A stalled worker that wakes up after its successor
took over can only write into a file no reader can reach; its Kafka commit then fails.
Recovery finds parts from the folder itself (any part of an assigned partition, and this
instance's parts of earlier runs), never from bookkeeping a zombie could delete.

Test points (eokafka/faults.py): ``files.before-append``, ``files.after-fsync``,
``files.after-prepare``, ``files.before-done``, ``files.before-rename``, ``files.mid-rename``.
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

from connectors.file_parts import (
    INPROGRESS,
    Mark,
    PartName,
    encode,
    fsync_dir,
    in_doubt,
    kept,
    new_session,
    publish_copy,
    read_marks,
    write_all,
)
from eokafka import faults
from eokafka.errors import ConfigError
from eokafka.sink import TP, Where

log = logging.getLogger("connectors.files")
Format = Literal["jsonl", "csv"]


@dataclass
class _Part:
    """A part this sink writes: its open descriptors and what it wrote through them."""

    name: PartName
    path: Path
    fd: int
    marks_fd: int
    first: int
    size: int = 0
    marks: list[Mark] = field(default_factory=list)
    created: float = field(default_factory=time.monotonic)

    def clean(self) -> bool:
        """Its last transaction is done and nothing was written after it."""
        return bool(self.marks) and "done" in self.marks[-1] and self.size == self.length()

    def length(self) -> int:
        txns = [m for m in self.marks if "txn" in m]
        return int(txns[-1]["length"]) if txns else 0

    def taken(self) -> bool:
        """Another worker finished it (and unlinked it): it can only be dropped."""
        return os.fstat(self.fd).st_nlink == 0

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.marks_fd)


@dataclass(frozen=True)
class _Leftover:
    """A part to finish: its name, path, marks as read once, and whether it is this sink's."""

    name: PartName
    path: Path
    marks: list[Mark]
    own: bool


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
        self._app = self._instance = self._session = ""
        self._made = 0  # parts created in this session
        self._parts: dict[TP, _Part] = {}
        self._rows: dict[TP, list[bytes]] = {}
        self._first: dict[TP, int] = {}  # first input offset buffered per partition
        self._prepared: list[tuple[TP, str]] = []
        self._doubts: dict[str, list[_Leftover]] = {}

    def __repr__(self) -> str:
        return f"{self.format} files in {self.directory}"

    @property
    def _inprogress(self) -> Path:
        return self.directory / INPROGRESS

    def open(self, application_id: str, instance_id: str) -> None:
        self._app, self._instance = encode(application_id), encode(instance_id)
        self._session = new_session()
        self._inprogress.mkdir(parents=True, exist_ok=True)

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

    def add(self, where: Where, row: Any) -> None:
        tp = (where[0], where[1])
        rows = self._rows.setdefault(tp, [])
        if not rows:
            self._first[tp] = where[2]
        rows.append(row)

    # -- the transaction -----------------------------------------------------------------

    def _writable(self, tp: TP) -> _Part:
        part = self._parts.get(tp)
        if part is not None and part.taken():
            log.warning("sink %s: part %s was finished by another worker", self.name, part.path)
            self._drop(tp)
            part = None
        if part is None:
            self._made += 1
            session = f"{self._session}.{self._made}"
            name = PartName(self._app, tp[0], tp[1], self._instance, session)
            path = self._inprogress / f"{name.stem}.{self.format}"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
            fd = os.open(path, flags, 0o644)
            marks_fd = os.open(path.with_suffix(".marks"), flags, 0o644)
            part = self._parts[tp] = _Part(name, path, fd, marks_fd, self._first[tp])
            header = self._header()
            write_all(fd, header)
            part.size = len(header)
            fsync_dir(self._inprogress)
        return part

    def _mark(self, part: _Part, mark: Mark) -> None:
        write_all(part.marks_fd, json.dumps(mark).encode() + b"\n")
        os.fsync(part.marks_fd)
        part.marks.append(mark)

    def prepare(self, txn_id: str, offsets: Mapping[TP, int]) -> None:
        for tp, rows in sorted(self._rows.items()):
            if not rows:
                continue
            part = self._writable(tp)
            data = b"".join(rows)
            rows.clear()
            faults.reached("files.before-append")
            write_all(part.fd, data)
            os.fsync(part.fd)
            part.size += len(data)
            faults.reached("files.after-fsync")
            mark = {"txn": txn_id, "first": part.first, "end": offsets[tp], "length": part.size}
            self._mark(part, mark)
            self._prepared.append((tp, txn_id))
            faults.reached("files.after-prepare")

    def finish(self) -> None:
        """Kafka committed: mark each part's transaction done; roll the parts due."""
        for tp, txn_id in self._prepared:
            faults.reached("files.before-done")
            part = self._parts.get(tp)
            if part is not None:
                self._mark(part, {"done": txn_id})
        self._prepared.clear()
        now = time.monotonic()
        for tp, part in list(self._parts.items()):
            due = part.size >= self.roll_bytes or now - part.created >= self.roll_seconds
            if due and part.clean():
                self._finish_own(tp, part.marks)

    def abort(self) -> None:
        """Drop the buffers; appended but uncommitted bytes are cut back by recovery."""
        self._prepared.clear()
        self._rows.clear()

    # -- finishing, recovery -------------------------------------------------------------

    def _drop(self, tp: TP) -> None:
        self._parts.pop(tp).close()

    def _finish_own(self, tp: TP, marks: list[Mark]) -> None:
        """Cut this sink's part to its kept transactions and rename it into place."""
        part = self._parts[tp]
        committed = kept(marks, True)
        if committed and part.size > committed[-1]["length"]:
            os.ftruncate(part.fd, committed[-1]["length"])
            os.fsync(part.fd)
        self._drop(tp)
        if committed:
            faults.reached("files.before-rename")
            try:
                os.rename(part.path, self.directory / part.name.finished(committed, self.format))
            except FileNotFoundError:
                log.info("sink %s: part %s was finished by another worker", self.name, part.path)
            else:
                faults.reached("files.mid-rename")
                fsync_dir(self.directory)
        else:
            part.path.unlink(missing_ok=True)
        part.path.with_suffix(".marks").unlink(missing_ok=True)
        fsync_dir(self._inprogress)

    def _publish(self, leftover: _Leftover, marks: list[Mark]) -> None:
        """Finish a part with ``marks`` kept; another worker's by copying (no zombie's
        descriptor reaches the copy), this sink's own by renaming."""
        tp = (leftover.name.topic, leftover.name.partition)
        if leftover.own:
            self._finish_own(tp, marks)
            return
        if marks:
            final = self.directory / leftover.name.finished(marks, self.format)
            publish_copy(leftover.path, int(marks[-1]["length"]), final)
        leftover.path.unlink(missing_ok=True)
        leftover.path.with_suffix(".marks").unlink(missing_ok=True)
        fsync_dir(self._inprogress)

    def _review(self, leftover: _Leftover, doubts: dict[str, set[TP]]) -> None:
        """Finish a part now, or keep it for ``resolve`` if its last transaction is in doubt."""
        txn = in_doubt(leftover.marks)
        if txn is None:
            self._publish(leftover, kept(leftover.marks, True))
            return
        self._doubts.setdefault(txn, []).append(leftover)
        doubts.setdefault(txn, set()).add((leftover.name.topic, leftover.name.partition))

    def _found(self) -> list[tuple[PartName, Path]]:
        """This application's parts in progress, as the folder lists them."""
        stems = set()
        for path in self._inprogress.glob(f"{self._app}+*"):
            if path.suffix in (".marks", f".{self.format}"):
                stems.add(path.name[: -len(path.suffix)])
        out = []
        for stem in sorted(stems):
            name = PartName.parse(stem)
            if name is not None:
                out.append((name, self._inprogress / f"{stem}.{self.format}"))
        return out

    def in_doubt(self, partitions: set[TP], instance_id: str) -> dict[str, set[TP]]:
        """Parts whose last transaction is undecided, by transaction; others are finished.

        Reviewed: this sink's parts of the partitions (re)assigned now, and those with work
        not done (after an abort); every part of another run for an assigned partition; and
        this instance's parts of earlier runs, whatever their partition.
        """
        self._doubts.clear()
        doubts: dict[str, set[TP]] = {}
        for tp, part in list(self._parts.items()):
            if part.taken():
                self._drop(tp)
            elif tp in partitions or not part.clean():
                self._review(_Leftover(part.name, part.path, list(part.marks), True), doubts)
        instance = encode(instance_id)
        for name, path in self._found():
            if name.run == self._session:
                continue
            earlier_mine = name.instance == instance and name.run < self._session
            if (name.topic, name.partition) in partitions or earlier_mine:
                marks = read_marks(path.with_suffix(".marks"))
                self._review(_Leftover(name, path, marks, False), doubts)
        return doubts

    def resolve(self, txn_id: str, commit: bool) -> None:
        for leftover in self._doubts.pop(txn_id, []):
            self._publish(leftover, kept(leftover.marks, commit))

    def positions(self, partitions: set[TP]) -> dict[TP, int]:
        return {}

    def close(self) -> None:
        """After a clean stop: finish this sink's parts (in any state: never opened, too)."""
        for tp, part in list(self._parts.items()):
            if part.clean() and not part.taken():
                self._finish_own(tp, part.marks)
            else:
                self._drop(tp)  # left to the next recovery
        self._rows.clear()
        self._prepared.clear()
