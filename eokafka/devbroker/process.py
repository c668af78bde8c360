"""The broker's JVM process: launch, pid file, liveness, termination, and its log file."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

from eokafka.devbroker.home import Layout
from eokafka.devbroker.jars import tail

_ROTATE_LOG_BYTES = 64 * 1024 * 1024
_JVM_OPTS_ENV = "EOKAFKA_BROKER_JVM_OPTS"


# Popen objects of brokers started by this process: polling them reaps the child, so a
# broker stopped from the same process is not mistaken for alive while it is a zombie,
# and its exit code can be reported. One small entry per launch, never pruned.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return True
    fields = stat.rpartition(")")[2].split()
    return not fields or fields[0] not in ("Z", "X")


def is_our_broker(pid: int, layout: Layout) -> bool:
    """Guard against pid reuse: never signal a process that is not this home's broker."""
    if not alive(pid):
        return False
    if not Path("/proc/self/cmdline").exists():
        return True  # no procfs (e.g. macOS): the pid file is all we have
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in args and os.fsencode(str(layout.server_properties)) in args


def read_pid(layout: Layout) -> int | None:
    """The pid the home's last start wrote, if any."""
    try:
        return int(layout.pid_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def write_pid(layout: Layout, pid: int) -> None:
    """Replace the home's pid file atomically."""
    tmp = layout.pid_file.with_suffix(".pid.tmp")
    tmp.write_text(f"{pid}\n", encoding="utf-8")
    os.replace(tmp, layout.pid_file)


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` s for ``pid`` to end; True if it did."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM for a clean shutdown (flushes logs, ends transactions), SIGKILL as last resort."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        if not wait_exit(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            wait_exit(pid, 10.0)


def log_tail(layout: Layout, offset: int = 0) -> str:
    """The last lines the broker logged from ``offset`` on, for an error message."""
    try:
        with open(layout.log_file, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return "    (no log written)"
    return tail(text)


def rotate_log(layout: Layout, force: bool = False) -> None:
    """Keep one previous log so the file does not grow forever across restarts."""
    try:
        size = layout.log_file.stat().st_size
    except FileNotFoundError:
        return
    if force or size > _ROTATE_LOG_BYTES:
        os.replace(layout.log_file, layout.log_file.with_name(layout.log_file.name + ".1"))


def classpath(libs: Path) -> str:
    return f"{libs}{os.sep}*"  # expanded by the JVM, not a shell


def log4j_opts(layout: Layout) -> list[str]:
    return [f"-Dlog4j2.configurationFile={layout.log4j_config}", f"-Dkafka.logs.dir={layout.home}"]


def launch(java: str, libs: Path, layout: Layout) -> subprocess.Popen[bytes]:
    """Start the broker JVM of ``layout`` in the background, its output in the log file."""
    cmd = [
        java, "-Xmx1g", "-Xms256m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true", *log4j_opts(layout),
        *shlex.split(os.environ.get(_JVM_OPTS_ENV, "")),
        "-cp", classpath(libs), "kafka.Kafka", str(layout.server_properties),
    ]
    with open(layout.log_file, "ab") as log:
        log.write(f"==== eokafka dev broker starting at {time.ctime()} ====\n".encode())
        log.flush()
        # A new session detaches the JVM from the caller's terminal, so Ctrl-C in the
        # shell that ran `eokafka broker start` does not take the broker down later.
        proc = subprocess.Popen(
            cmd, cwd=layout.home, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc


def exit_code(pid: int) -> int | None:
    """The exit code of a broker this process launched and saw exit; None for any other."""
    child = _CHILDREN.get(pid)
    return None if child is None else child.returncode
