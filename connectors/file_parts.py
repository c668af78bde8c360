"""Part files of the file sink: their names, their marks, and making one visible.

A part in progress is ``<directory>/.inprogress/<app>+<topic>+<partition>+<instance>+<session>``
with ``.jsonl`` (or ``.csv``) and ``.marks`` beside it; a finished part is
``<directory>/<app>+<topic>+<partition>+<first>-<end>.jsonl``. ``<app>`` and ``<instance>``
are the application and instance ids, percent-encoded (no ``+``, ``/`` or glob character
is left in them), so two applications sharing a folder never touch each other's parts;
``<session>`` is unique to one run of one sink (it starts with the start time, so a run's
parts sort after those of the runs before it).

A part in progress is written only through the descriptors its writer opened when it
created it; nothing reopens one by path. Its writer alone renames it into place, after
closing them. Any other worker (the successor of a stalled or dead one) never renames
someone else's part, because a rename keeps the inode that a zombie may still hold open: it
copies the committed prefix into a new file and links that into place, then unlinks the
part. A zombie that wakes up later writes through its descriptors into a file that no
name leads to, so nothing it writes can reach a reader.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

INPROGRESS = ".inprogress"
Mark = dict[str, Any]  # {"txn", "first", "end", "length"} or {"done": txn}
_COPY_CHUNK = 1 << 20


def encode(text: str) -> str:
    """An id as it appears in part names: percent-encoded, safe in names and globs."""
    return quote(text, safe="")


def new_session() -> str:
    """A run's session: its start time (hex, fixed width, so it sorts) and a random tail."""
    return f"{time.time_ns():016x}{secrets.token_hex(4)}"


@dataclass(frozen=True)
class PartName:
    """The name of a part in progress: whose it is, and for which input partition."""

    app: str
    topic: str
    partition: int
    instance: str
    session: str  # "<session>.<n>": the n-th part of that partition in that session

    @property
    def stem(self) -> str:
        return f"{self.app}+{self.topic}+{self.partition}+{self.instance}+{self.session}"

    @property
    def run(self) -> str:
        return self.session.partition(".")[0]

    @classmethod
    def parse(cls, stem: str) -> PartName | None:
        parts = stem.split("+")
        if len(parts) != 5 or not parts[2].isdigit():
            return None
        app, topic, partition, instance, session = parts
        return cls(app, topic, int(partition), instance, session)

    def finished(self, marks: list[Mark], fmt: str) -> str:
        """The finished part's name: the input offsets its transactions cover."""
        first, end = marks[0]["first"], marks[-1]["end"]
        return f"{self.app}+{self.topic}+{self.partition}+{first}-{end}.{fmt}"


def read_marks(path: Path) -> list[Mark]:
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


def in_doubt(marks: list[Mark]) -> str | None:
    """The part's last transaction if it was prepared but never marked done."""
    txns = [m["txn"] for m in marks if "txn" in m]
    if txns and not any(m.get("done") == txns[-1] for m in marks):
        return str(txns[-1])
    return None


def kept(marks: list[Mark], last_committed: bool) -> list[Mark]:
    """The transactions whose rows stay: all, or all but an undecided last one."""
    txns = [m for m in marks if "txn" in m]
    if txns and not last_committed and in_doubt(marks) == txns[-1]["txn"]:
        txns.pop()
    return txns


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_copy(src: Path, length: int, final: Path) -> bool:
    """Copy the first ``length`` bytes of ``src`` into a new file at ``final``.

    False if ``src`` is gone (another worker finished it). If ``final`` exists already,
    another worker copied the same bytes there (the Kafka commit decided for both), and it
    is left as it is.
    """
    try:
        src_fd = os.open(src, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        size = os.fstat(src_fd).st_size
        if size < length:
            raise OSError(f"part file {src} has {size} bytes, fewer than the {length} committed")
        dst_fd, tmp = _new_file(final.parent, src)
        try:
            at = 0
            while at < length:
                chunk = os.pread(src_fd, min(_COPY_CHUNK, length - at), at)
                write_all(dst_fd, chunk)
                at += len(chunk)
            os.fsync(dst_fd)
            _link(dst_fd, tmp, final)
        finally:
            os.close(dst_fd)
            if tmp is not None:
                os.unlink(tmp)
        fsync_dir(final.parent)
        return True
    finally:
        os.close(src_fd)


def _link(fd: int, tmp: str | None, final: Path) -> None:
    """Give the new file its final name, unless another worker's copy has it already.

    An unnamed file is linked through /proc with linkat(AT_SYMLINK_FOLLOW), which os.link
    uses only when given a directory descriptor.
    """
    folder = os.open(final.parent, os.O_RDONLY)
    try:
        os.link(tmp or f"/proc/self/fd/{fd}", final.name, dst_dir_fd=folder)
    except FileExistsError:
        pass
    finally:
        os.close(folder)


def _new_file(folder: Path, src: Path) -> tuple[int, str | None]:
    """An unnamed file in ``folder`` (O_TMPFILE), or else a temporary one beside ``src``."""
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
        try:
            return os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o644), None
        except OSError:
            pass  # not supported by this filesystem
    tmp = f"{src}.{secrets.token_hex(4)}.copy"
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), tmp
