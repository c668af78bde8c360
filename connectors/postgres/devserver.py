"""A throwaway local PostgreSQL for demos, benchmarks and tests (like eokafka.devbroker).

Debian's PostgreSQL server (``/usr/lib/postgresql/<version>/bin``, ``apt-get install
postgresql``) initialised in a temporary folder with a free TCP port, its unix socket in that
folder, two-phase commit enabled (``max_prepared_transactions``) and ``fsync=off`` for speed:
commits still reach the OS before they return, so a killed server keeps them; only a machine
crash would not. initdb and postgres refuse to run as root, so under root they run as the
unprivileged ``postgres`` user that the package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PREPARED = 64


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    return Path(found[-1]).parent if found else None


def _version_key(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPostgres:
    """A PostgreSQL cluster in a temporary folder, owned by an unprivileged user under root."""

    def __init__(self, prepared: int = PREPARED) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None:
            raise RuntimeError(
                "no PostgreSQL server found (/usr/lib/postgresql/*/bin/initdb): "
                "apt-get install -y postgresql (.ci/run does this)"
            )
        self.bin = bin_dir
        self.home = Path(tempfile.mkdtemp(prefix="eokafka-pg-"))
        self.data = self.home / "data"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.home, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.home}'\nmax_prepared_transactions = {prepared}\n"
                "fsync = off\nfull_page_writes = off\n"
                "max_connections = 200\n"
            )
        self.start()

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [*self._as, str(self.bin / tool), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.home / "server.log"),
                  "-w", "-t", "120", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "120", "stop")

    def restart(self, mode: str = "immediate") -> None:
        """Stop (``immediate``: like a crash, connections cut) and start the same cluster."""
        self.stop(mode)
        self.start()

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.home, ignore_errors=True)
