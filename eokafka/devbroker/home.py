"""A broker home's files: where each one is, and what the last start wrote into them.

Layout of a home: ``server.properties``, ``data/``, ``broker.log`` and ``broker.pid``; a
secured home (``security="sasl-ssl"``) also ``tls/`` (CA and broker certificate),
``users.properties`` (the SCRAM users made at format time) and ``client.properties`` (the
settings a client needs).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from eokafka.devbroker.jars import user_cache_dir

HOST = "127.0.0.1"


class Layout:
    """File locations inside a broker home, kept in one place so start/stop/status agree."""

    def __init__(self, home: Path) -> None:
        # Absolute paths: they end up on the JVM command line, which is how a pid is
        # recognised as *this* home's broker.
        self.home = home.expanduser().resolve()
        self.server_properties = self.home / "server.properties"
        self.log4j_config = self.home / "log4j2.properties"
        self.data_dir = self.home / "data"
        self.log_dirs = self.data_dir / "kraft-combined-logs"
        self.log_file = self.home / "broker.log"
        self.pid_file = self.home / "broker.pid"
        self.lock_file = self.home / ".lock"
        self.tls_dir = self.home / "tls"
        self.users = self.home / "users.properties"
        self.client_properties = self.home / "client.properties"


def default_home() -> Path:
    """Home used when none is given: ``$EOKAFKA_BROKER_HOME`` or ``<cache>/eokafka/broker``."""
    env = os.environ.get("EOKAFKA_BROKER_HOME")
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "eokafka" / "broker"


def configured_bootstrap(layout: Layout) -> str | None:
    """The address the home's broker (as last configured) tells clients to connect to."""
    try:
        text = layout.server_properties.read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(
        r"^advertised\.listeners=(?:PLAINTEXT|SASL_SSL)://(\S+)$", text, re.MULTILINE
    )
    return match.group(1) if match else None


def read_properties(path: Path) -> dict[str, str]:
    """A key=value file's settings; none if it can't be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.lstrip().startswith("#")}


def write_properties(path: Path, values: Mapping[str, str], header: str) -> None:
    """Write a key=value file readable by its owner only (it may hold passwords)."""
    body = "".join(f"{k}={v}\n" for k, v in values.items())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(f"# {header}\n{body}")


def secured(layout: Layout) -> bool:
    """Whether the home's broker (as last configured) serves SASL_SSL."""
    try:
        text = layout.server_properties.read_text(encoding="utf-8")
    except OSError:
        return False
    return "advertised.listeners=SASL_SSL://" in text


def client_config(layout: Layout) -> dict[str, str]:
    """The librdkafka settings a client of the home's broker needs (empty for plaintext)."""
    return read_properties(layout.client_properties) if secured(layout) else {}
