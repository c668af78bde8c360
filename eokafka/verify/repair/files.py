"""Repair a folder of FileSink parts: rewrite parts atomically, add one new finished part.

A part holding records to remove or fix is written again beside itself (a hidden file,
fsynced) and renamed over the old one, so a reader sees the old part or the new one, never
a mix; its other records keep their bytes. Missing records of a source partition go into
one new part named as the sink names parts (``eokafka.verify.fileparts``), linked into
place only if no file has that name. A lock file keeps two repairs of a folder apart.
The sink itself never changes a finished part, and never writes a record below its
committed offsets again (see ``eokafka.verify.line``).
"""

from __future__ import annotations

import csv
import fcntl
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from eokafka.errors import ConfigError, EokafkaError
from eokafka.sink import Sink
from eokafka.verify import Checked, CheckOptions
from eokafka.verify.fileparts import (
    PartWriter,
    app_of,
    find_sink,
    fsync_dir,
    inprogress_starts,
    part_name,
    writer_for_new_parts,
    writer_of,
)
from eokafka.verify.line import NotNow
from eokafka.verify.progress import Progress
from eokafka.verify.readers import csv_read
from eokafka.verify.records import Read, from_json
from eokafka.verify.repair.fetch import fetch, value_of
from eokafka.verify.repair.plan import Capabilities, Done, Item, Plan

if TYPE_CHECKING:
    from connectors.files import FileSink

_LOCK = ".eokafka-repair.lock"


class PartChanged(EokafkaError):
    """A part is not what the check read: something other than the sink changed it."""


def _write_hidden(folder: Path, name: str, data: bytes) -> Path:
    tmp = folder / f".{name}.repair"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def records_of(path: Path, id_field: str) -> Iterator[tuple[int, bytes, Read | None]]:
    """A part's pieces in order: (line number as verify names it, bytes, the record's id).

    A JSON Lines record is its line; a CSV record may span lines (a quoted newline) and is
    named by its last line, as ``csv.reader.line_num`` does. A header or a blank line has
    no record (None).
    """
    if path.suffix != ".csv":
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                read = from_json((0, n), line, id_field, ()) if line.strip() else None
                yield n, line, read
        return
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        taken: list[str] = []

        def lines() -> Iterator[str]:
            for line in f:
                taken.append(line)
                yield line

        reader = csv.reader(lines())
        header: list[str] | None = None
        for row in reader:
            raw = "".join(taken).encode("utf-8", "surrogateescape")
            taken.clear()
            read = None
            if header is None:
                header = row
            elif row:
                read = csv_read((0, reader.line_num), header, row, id_field, ())
            yield reader.line_num, raw, read


class FilesRepair:
    """Plans and applies the changes to ``files:<folder>``."""

    can = Capabilities(remove=True, fix=True)

    def __init__(self, opts: CheckOptions, sinks: Mapping[str, Sink]) -> None:
        self.opts = opts
        self.folder = Path(opts.target.where)
        self.sink: FileSink | None = find_sink(sinks, opts.target.where)
        self._rows: dict[int, bytes] = {}  # by id() of an add or fix item
        self._paths: list[Path] = []
        self._new: PartWriter | None = None

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        if not self.folder.is_dir():
            raise ConfigError(f"folder {self.folder} does not exist")
        fd = os.open(self.folder / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise ConfigError(f"another repair of folder {self.folder} is running") from exc
            yield
        finally:
            os.close(fd)

    def unguarded(self) -> None:
        """In-progress parts hold records the sink may still finish: not a time to add any."""
        starts = inprogress_starts(str(self.folder))
        if starts:
            (topic, partition), first = min(starts.items())
            raise NotNow(
                f"{self.folder} has in-progress parts (e.g. {topic}[{partition}] from offset "
                f"{first}) that the sink may still finish: stop the app cleanly (it finishes "
                "them), or give its group (--group or --app) to repair below its commits"
            )

    def prepare(self, plan: Plan, checked: Checked, progress: Progress) -> None:
        """Fetch the records to write and make their rows in the format of their part."""
        self._paths = checked.parts
        adds = plan.of("add")
        if adds:
            self._new = writer_for_new_parts(str(self.folder), self._paths, self.sink)
        writes = adds + plan.of("fix")
        found = fetch(self.opts.bootstrap, self.opts.source,
                      [i.source_loc for i in writes if i.source_loc], progress)
        for item in writes:
            assert item.source_loc is not None
            writer = self._new if item.action == "add" else writer_of(self._part(item))
            assert writer is not None
            try:
                self._rows[id(item)] = writer.row(value_of(found[item.source_loc]))
            except TypeError as exc:
                item.leave(f"can't be written as a {writer.format} row: {exc}")
        for path, items in self._by_part(plan).items():
            drop = sum(i.action == "remove" for i in items)
            plan.steps.append(f"rewrite {path}: remove {drop} records, fix {len(items) - drop}")
        for partition, items in self._adds(plan).items():
            plan.steps.append(f"write the new part {self._new_name(partition, items)} with "
                              f"{len(items)} records")

    def _part(self, item: Item) -> Path:
        assert item.loc is not None
        return self._paths[item.loc[0]]

    def _by_part(self, plan: Plan) -> dict[Path, list[Item]]:
        out: dict[Path, list[Item]] = {}
        for item in plan.items:
            if item.action in ("remove", "fix"):
                out.setdefault(self._part(item), []).append(item)
        return out

    def _adds(self, plan: Plan) -> dict[int, list[Item]]:
        out: dict[int, list[Item]] = {}
        for item in sorted(plan.of("add"), key=lambda i: i.source_loc or (0, 0)):
            assert item.source_loc is not None
            out.setdefault(item.source_loc[0], []).append(item)
        return out

    def _new_name(self, partition: int, items: list[Item]) -> str:
        assert self._new is not None
        offsets = [i.source_loc[1] for i in items if i.source_loc is not None]
        app = self.opts.group or app_of(self._paths)
        if app is None:
            raise ConfigError(
                f"the new part's name in {self.folder} needs the application id (its parts "
                "name none, or several): pass --app module:app or --group"
            )
        return part_name(app, self.opts.source, partition, min(offsets), max(offsets) + 1,
                         self._new.format)

    def apply(self, plan: Plan, progress: Progress) -> Done:
        by_part = self._by_part(plan)
        adds = self._adds(plan)
        step = progress.step(f"repairing {self.folder}", len(by_part) + len(adds))
        done = Done()
        for path, items in by_part.items():
            self._rewrite(path, items)
            done.removed += sum(i.action == "remove" for i in items)
            done.fixed += sum(i.action == "fix" for i in items)
            done.steps.append(f"rewrote {path}")
            step.advance()
        for partition, items in adds.items():
            done.steps.append(f"wrote {self._write_part(partition, items)}")
            done.added += len(items)
            step.advance()
        step.finish()
        return done

    def _rewrite(self, path: Path, items: list[Item]) -> None:
        change = {i.loc[1]: i for i in items if i.loc is not None}
        out: list[bytes] = []
        records = 0
        for n, raw, read in records_of(path, self.opts.id_field):
            item = change.pop(n, None)
            if item is not None:
                found = None if read is None else read.id
                if found != item.id:
                    raise PartChanged(
                        f"{path}:{n} holds {found!r}, not {item.id!r} as the check saw: "
                        "another writer changed it; nothing changed there, run the repair again"
                    )
                if item.action == "remove":
                    continue
                raw = self._rows[id(item)]
            out.append(raw)
            records += read is not None
        if change:
            raise PartChanged(f"{path} has no line {min(change)} any more: nothing changed "
                              "there, run the repair again")
        if records:
            tmp = _write_hidden(path.parent, path.name, b"".join(out))
            os.replace(tmp, path)
        else:
            path.unlink()
        fsync_dir(path.parent)

    def _write_part(self, partition: int, items: list[Item]) -> Path:
        assert self._new is not None
        name = self._new_name(partition, items)
        final = self.folder / name
        data = self._new.header() + b"".join(self._rows[id(i)] for i in items)
        tmp = _write_hidden(self.folder, name, data)
        try:
            os.link(tmp, final)  # atomic, and never over a part of the same name
        except FileExistsError as exc:
            raise PartChanged(
                f"a part named {final} exists already: the missing records of partition "
                f"{partition} were not written"
            ) from exc
        finally:
            tmp.unlink()
        fsync_dir(self.folder)
        return final
