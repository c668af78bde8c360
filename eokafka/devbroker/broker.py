"""Run a single-node Apache Kafka broker (KRaft, combined broker+controller) as a local JVM.

Exactly-once processing needs a real broker (transactions, read_committed, group
coordinator), and Docker is not always available. A plain JVM with the broker jars
pulled once by Maven gives every developer and CI job the same Kafka version as
docker-compose.yml, with nothing to install beyond a JDK.

This module starts, stops, reports on and signals the broker of a *home*; the pieces are
``home.py`` (its files), ``server_properties.py``, ``security.py`` (SASL_SSL: SCRAM users,
TLS), ``storage.py`` (formatting), ``process.py`` (the JVM, its pid and log) and
``readiness.py`` (free ports, a broker that answers); ``jars.py`` fetches the jars.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from eokafka.devbroker.errors import BrokerError
from eokafka.devbroker.home import (
    HOST,
    Layout,
    client_config,
    configured_bootstrap,
    default_home,
)
from eokafka.devbroker.jars import (
    check_java_version,
    ensure_libs,
    file_lock,
    find_java,
    resource_text,
)
from eokafka.devbroker.process import (
    alive,
    is_our_broker,
    launch,
    read_pid,
    rotate_log,
    terminate,
    wait_exit,
    write_pid,
)
from eokafka.devbroker.readiness import answers, port_in_use, wait_until_answering
from eokafka.devbroker.security import SECURITY_MODES, prepare_security
from eokafka.devbroker.server_properties import render_server_properties
from eokafka.devbroker.storage import format_storage

__all__ = [
    "BrokerInfo",
    "broker_status",
    "signal_broker",
    "start_broker",
    "stop_broker",
]


@dataclass(frozen=True)
class BrokerInfo:
    """Where a dev broker is and whether it is usable.

    ``running`` is True only when the process is alive *and* answers Kafka requests,
    because a JVM that is up but not serving is useless to callers.
    """

    bootstrap: str
    pid: int | None
    log_file: Path
    data_dir: Path
    running: bool
    security: str = "plaintext"
    # The librdkafka settings a client needs (security.protocol, sasl.*, ssl.ca.location),
    # empty for plaintext. Holds a password: never in the repr.
    client_config: Mapping[str, str] = field(default_factory=dict, repr=False)
    client_properties: Path | None = None  # the same settings, as a key=value file


def _info(layout: Layout, bootstrap: str, pid: int | None, running: bool) -> BrokerInfo:
    config = client_config(layout)
    return BrokerInfo(
        bootstrap, pid, layout.log_file, layout.data_dir, running,
        security="sasl-ssl" if config else "plaintext",
        client_config=config,
        client_properties=layout.client_properties if config else None,
    )  # fmt: skip


def _validate_ports(port: int, controller_port: int) -> None:
    for value in (port, controller_port):
        if not 1 <= value <= 65535:
            raise BrokerError(f"Port {value} is out of range: use 1-65535")
    if port == controller_port:
        raise BrokerError(f"The client and controller ports must differ (both are {port})")


def start_broker(
    port: int = 9092,
    home: Path | None = None,
    timeout: float = 90.0,
    fresh: bool = False,
    *,
    controller_port: int | None = None,
    security: str = "plaintext",
    advertised: str | None = None,
) -> BrokerInfo:
    """Start (or reuse) the dev broker of ``home`` and return once clients can use it.

    A broker already running from ``home`` is returned as is (its own port wins over
    ``port``) unless ``fresh`` is set, which stops it and wipes its data. Without ``fresh``
    a stopped or killed broker restarts on the data it left. ``timeout`` bounds the wait
    for the broker to answer; the one-off jar download is not counted.
    ``security="sasl-ssl"`` serves SASL_SSL (SCRAM-SHA-512 users, a private CA) instead of
    PLAINTEXT; ``BrokerInfo.client_config`` then holds what a client must set. ``advertised``
    (host:port) is the address the broker tells clients to connect to, e.g. a fault-injecting
    proxy in front of it in tests; it is then the returned bootstrap address.
    """
    if security not in SECURITY_MODES:
        raise BrokerError(f"security={security!r}: choose one of {', '.join(SECURITY_MODES)}")
    layout = Layout(home if home is not None else default_home())
    controller_port = port + 1 if controller_port is None else controller_port
    _validate_ports(port, controller_port)
    layout.home.mkdir(parents=True, exist_ok=True)
    with file_lock(layout.lock_file):
        pid = read_pid(layout)
        if pid is not None and is_our_broker(pid, layout):
            if not fresh:
                bootstrap = configured_bootstrap(layout) or f"{HOST}:{port}"
                wait_until_answering(pid, bootstrap, layout, timeout, log_offset=0)
                return _info(layout, bootstrap, pid, True)
            terminate(pid, 30.0)
        layout.pid_file.unlink(missing_ok=True)

        for value, role in ((port, "client"), (controller_port, "controller")):
            if port_in_use(value):
                raise BrokerError(
                    f"Port {value} on {HOST} (Kafka {role} listener) is already in use: "
                    f"stop whatever listens there or start the broker on another port"
                )
        java = find_java()
        check_java_version(java)
        libs = ensure_libs()

        if fresh:
            shutil.rmtree(layout.data_dir, ignore_errors=True)
            layout.users.unlink(missing_ok=True)  # new storage, new SCRAM passwords
        rotate_log(layout, force=fresh)
        layout.data_dir.mkdir(parents=True, exist_ok=True)
        layout.log4j_config.write_text(resource_text("log4j2.properties"), encoding="utf-8")
        formatted = (layout.log_dirs / "meta.properties").is_file()
        broker_password = (
            prepare_security(layout, formatted) if security == "sasl-ssl" else None
        )
        layout.server_properties.write_text(
            render_server_properties(
                layout, port, controller_port, broker_password, advertised
            ),
            encoding="utf-8",
        )
        if not (layout.log_dirs / "meta.properties").is_file():
            format_storage(java, libs, layout)

        bootstrap = f"{HOST}:{port}"
        log_offset = layout.log_file.stat().st_size if layout.log_file.exists() else 0
        proc = launch(java, libs, layout)
        write_pid(layout, proc.pid)
        try:
            wait_until_answering(proc.pid, bootstrap, layout, timeout, log_offset)
        except BaseException:
            # Covers timeouts and Ctrl-C alike: never leave a half-started JVM behind.
            terminate(proc.pid, 10.0)
            layout.pid_file.unlink(missing_ok=True)
            raise
        return _info(layout, advertised or bootstrap, proc.pid, True)


def stop_broker(home: Path | None = None, timeout: float = 30.0) -> bool:
    """Stop the dev broker of ``home``; True if one was running and has been stopped."""
    layout = Layout(home if home is not None else default_home())
    if not layout.home.is_dir():
        return False
    with file_lock(layout.lock_file):
        pid = read_pid(layout)
        if pid is None:
            return False
        if not is_our_broker(pid, layout):
            layout.pid_file.unlink(missing_ok=True)  # stale: the broker died on its own
            return False
        terminate(pid, timeout)
        if alive(pid):
            raise BrokerError(
                f"Kafka broker pid {pid} is still alive after SIGKILL: check `ps {pid}`"
            )
        layout.pid_file.unlink(missing_ok=True)
        return True


def broker_status(home: Path | None = None) -> BrokerInfo:
    """Report on the dev broker of ``home`` without changing anything."""
    layout = Layout(home if home is not None else default_home())
    bootstrap = configured_bootstrap(layout) or f"{HOST}:9092"
    pid = read_pid(layout)
    ours = pid is not None and is_our_broker(pid, layout)
    running = ours and answers(bootstrap, config=client_config(layout))
    return _info(layout, bootstrap, pid if ours else None, running)


def signal_broker(home: Path | None, sig: int, timeout: float = 30.0) -> int:
    """Send ``sig`` to the dev broker of ``home`` and return its pid; for fault injection.

    Tests pause (SIGSTOP, SIGCONT) or crash (SIGKILL) the broker this way, then restart a
    killed one with ``start_broker`` on the same home and port: it recovers its data dir.
    After SIGKILL this waits until the process is gone, so its ports are free again.
    """
    layout = Layout(home if home is not None else default_home())
    pid = read_pid(layout)
    if pid is None or not is_our_broker(pid, layout):
        raise BrokerError(f"no dev broker is running from {layout.home}")
    os.kill(pid, sig)
    if sig == signal.SIGKILL and not wait_exit(pid, timeout):
        raise BrokerError(f"Kafka broker pid {pid} is still alive {timeout:.0f}s after SIGKILL")
    return pid
