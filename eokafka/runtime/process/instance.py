"""Stable worker instance ids, as Kafka Streams persists its process id in the state directory.

Without ``--instance-id`` a worker takes the lowest free numbered slot of a per-machine base
id (random, created once, kept in ``<state dir>/<application id>/instance.id``) and holds an
flock on the slot for its lifetime. The lock dies with the process, even on SIGKILL, so a
restarted worker takes the same slot back, fences its predecessor's transactions at once, and
two live workers on one machine never share an id. Two machines never share one by accident
because the base id is random per state directory.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from eokafka.config import Settings
from eokafka.errors import ConfigError

MAX_SLOTS = 1024


@dataclass
class InstanceId:
    value: str
    lock_fd: int | None = None

    def release(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


def _base_id(path: Path) -> str:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        value = path.read_text().strip()
        if value:
            return value
        raise ConfigError(f"{path} is empty: delete it to derive a new instance id") from None
    host = re.sub(r"[^A-Za-z0-9]+", "-", socket.gethostname()).strip("-")[:24] or "host"
    value = f"{host}-{uuid.uuid4().hex[:8]}"
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def resolve_instance_id(settings: Settings, slot_hint: int = 0) -> InstanceId:
    """The id for one worker process; ``slot_hint`` is the child index under --processes."""
    if settings.instance_id:
        if settings.processes == 1:
            return InstanceId(settings.instance_id)
        return InstanceId(f"{settings.instance_id}-{slot_hint}")
    folder = Path(settings.state_dir) / settings.application_id
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"state_dir {settings.state_dir!r} is not writable: {exc}") from exc
    base = _base_id(folder / "instance.id")
    order = [slot_hint, *(s for s in range(MAX_SLOTS) if s != slot_hint)]
    for slot in order:
        fd = os.open(folder / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return InstanceId(f"{base}-{slot}", fd)
    raise ConfigError(f"all {MAX_SLOTS} instance slots under {folder} are in use")
