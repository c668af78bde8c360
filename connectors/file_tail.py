"""Following the files of a folder through rotation: by identity and content, never by name.

A file is known by its device and inode, so a renamed file (``events.jsonl`` ->
``events-1.jsonl``) keeps its position and is read on to its end, and a new file under the
old name starts from its beginning. A file whose size fell below the position, or whose
first bytes (up to :data:`HEAD`) are no longer the ones read, was truncated or rewritten in
place (copy-truncate rotation): it is read again from its start.

Lines are read whole, however long: a line longer than ``max_line`` is not kept in memory
but reported (its first ``max_line`` bytes), so that the source can hand it to the policy.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

HEAD: Final = 1024  # bytes whose digest tells a file rewritten in place
CHUNK: Final = 1 << 20  # bytes read at a time
Ident = tuple[int, int]  # (st_dev, st_ino)


def ident_key(ident: Ident) -> str:
    return f"{ident[0]}:{ident[1]}"


def parse_ident(key: str) -> Ident:
    dev, _, ino = key.partition(":")
    return int(dev), int(ino)


def head_digest(fd: int, length: int) -> str:
    """Digest of a file's first ``min(length, HEAD)`` bytes."""
    return hashlib.blake2b(os.pread(fd, min(length, HEAD), 0), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Tail:
    """How far one file has been read: bytes and lines consumed, and its first bytes' digest."""

    at: int = 0
    line: int = 0
    head: str = ""

    def to_json(self) -> list[int | str]:
        return [self.at, self.line, self.head]

    @classmethod
    def from_json(cls, raw: list[int | str]) -> Tail:
        at, line, head = raw
        return cls(int(at), int(line), str(head))

    def still_there(self, fd: int, size: int) -> bool:
        """Whether the file still holds what was read (not truncated, not rewritten)."""
        return size >= self.at and (self.at == 0 or head_digest(fd, self.at) == self.head)

    def after(self, fd: int, at: int, lines: int) -> Tail:
        """The tail once ``lines`` more lines, up to byte ``at``, were consumed."""
        head = self.head if self.at >= HEAD else head_digest(fd, at)
        return Tail(at, self.line + lines, head)


def scan(directory: Path, pattern: str) -> dict[Ident, tuple[Path, int]]:
    """Regular files matching ``pattern`` (none hidden, nor in a hidden folder), by identity,
    with their size; a file seen under two names (a hard link) is listed under the first."""
    found: dict[Ident, tuple[Path, int]] = {}
    for path in sorted(directory.glob(pattern)):
        if any(part.startswith(".") for part in path.relative_to(directory).parts):
            continue
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            continue  # gone since the listing
        if stat.S_ISREG(st.st_mode):
            found.setdefault((st.st_dev, st.st_ino), (path, st.st_size))
    return found


class Line(NamedTuple):
    """A complete line: its byte offset and bytes (no newline); the first ``max_line`` bytes
    only, if it is longer (``too_long``)."""

    start: int
    data: bytes
    too_long: bool = False


def read_lines(fd: int, start: int, limit: int, max_line: int) -> tuple[list[Line], int]:
    """Up to ``limit`` complete lines from byte ``start``, and the offset after the last.

    A line counts once its newline is written; an incomplete one at the end waits.
    """
    lines: list[Line] = []
    pos = start  # where the first line not consumed starts
    buf = bytearray()  # the bytes read from pos on
    searched = 0  # bytes of buf known to hold no newline
    read_at = start
    long_head = b""  # while skipping a line too long: its first bytes
    skipping = False
    while len(lines) < limit:
        chunk = os.pread(fd, CHUNK, read_at)
        if not chunk:
            break
        chunk_at, read_at = read_at, read_at + len(chunk)
        if skipping:
            nl = chunk.find(b"\n")
            if nl < 0:
                continue
            lines.append(Line(pos, long_head, True))
            skipping = False
            pos = chunk_at + nl + 1
            buf = bytearray(chunk[nl + 1 :])
            searched = 0
        else:
            buf += chunk
        begin = 0
        while len(lines) < limit:
            nl = buf.find(b"\n", max(begin, searched))
            if nl < 0:
                break
            if nl - begin > max_line:
                lines.append(Line(pos + begin, bytes(buf[begin : begin + max_line]), True))
            else:
                lines.append(Line(pos + begin, bytes(buf[begin:nl])))
            begin = nl + 1
        pos += begin
        del buf[:begin]
        searched = len(buf)
        if len(buf) > max_line and len(lines) < limit:
            skipping, long_head = True, bytes(buf[:max_line])
            buf = bytearray()
            searched = 0
    return lines, pos
