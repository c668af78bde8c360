"""Run a single-node Apache Kafka broker (KRaft, combined broker+controller) as a local JVM.

Exactly-once processing needs a real broker (transactions, read_committed, group
coordinator), and Docker is not always available. A plain JVM with the broker jars
pulled once by Maven gives every developer and CI job the same Kafka version as
docker-compose.yml, with nothing to install beyond a JDK.

Layout: jars are shared by all homes under ``<cache>/eokafka/kafka-<version>/libs``;
each *home* holds ``server.properties``, ``data/``, ``broker.log`` and ``broker.pid``; a
secured home (``security="sasl-ssl"``) also ``tls/`` (CA and broker certificate),
``users.properties`` (the SCRAM users made at format time) and ``client.properties`` (the
settings a client needs).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from eokafka.devbroker.errors import BrokerError
from eokafka.devbroker.jars import (
    check_java_version,
    ensure_libs,
    file_lock,
    find_java,
    resource_text,
    tail,
    user_cache_dir,
)

_HOST = "127.0.0.1"
_FORMAT_TIMEOUT_S = 120.0
_ROTATE_LOG_BYTES = 64 * 1024 * 1024
_JVM_OPTS_ENV = "EOKAFKA_BROKER_JVM_OPTS"
SECURITY_MODES = ("plaintext", "sasl-ssl")
SCRAM_MECHANISM = "SCRAM-SHA-512"
CLIENT_USER = "eokafka"
_BROKER_USER = "broker"  # the broker's own SCRAM user (inter-broker: transaction markers)


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


class _Layout:
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


def _listener_settings(
    layout: _Layout,
    port: int,
    controller_port: int,
    broker_password: str | None,
    advertised: str | None = None,
) -> dict[str, str]:
    """PLAINTEXT, or SASL_SSL with SCRAM (``broker_password`` given) for clients and the
    broker itself; the controller listener stays on PLAINTEXT, on 127.0.0.1 only.
    ``advertised`` (host:port) is the address clients are told to connect to."""
    name = "PLAINTEXT" if broker_password is None else "SASL_SSL"
    settings = {
        "listeners": f"{name}://{_HOST}:{port},CONTROLLER://{_HOST}:{controller_port}",
        "advertised.listeners": f"{name}://{advertised or f'{_HOST}:{port}'}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": f"{name}:{name},CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": name,
    }
    if broker_password is None:
        return settings
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{_BROKER_USER}" password="{broker_password}";'
    )
    return {
        **settings,
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
        f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(layout.tls_dir / "broker.pem"),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(layout.tls_dir / "ca.pem"),
        "ssl.client.auth": "none",
    }


def _render_server_properties(
    layout: _Layout,
    port: int,
    controller_port: int,
    broker_password: str | None = None,
    advertised: str | None = None,
) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{_HOST}:{controller_port}",
        **_listener_settings(layout, port, controller_port, broker_password, advertised),
        "log.dirs": str(layout.log_dirs),
        "num.partitions": "1",
        # Tests create their topics explicitly; auto-creation would hide typos.
        "auto.create.topics.enable": "false",
        # Single node: internal topics cannot have more than one replica. Few
        # partitions keep the first transactional/group request fast.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # Abort transactions that outlived transaction.timeout.ms within a second of it,
        # not ten: a stuck worker's transaction pins its partitions' LSO meanwhile.
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
    }
    body = "\n".join(f"{key}={value}" for key, value in settings.items())
    return f"# Generated by eokafka.devbroker on every start; edits are overwritten.\n{body}\n"


def _configured_bootstrap(layout: _Layout) -> str | None:
    try:
        text = layout.server_properties.read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(
        r"^advertised\.listeners=(?:PLAINTEXT|SASL_SSL)://(\S+)$", text, re.MULTILINE
    )
    return match.group(1) if match else None


def _read_properties(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.lstrip().startswith("#")}


def _write_properties(path: Path, values: Mapping[str, str], header: str) -> None:
    body = "".join(f"{k}={v}\n" for k, v in values.items())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(f"# {header}\n{body}")


def _secured(layout: _Layout) -> bool:
    """Whether the home's broker (as last configured) serves SASL_SSL."""
    try:
        text = layout.server_properties.read_text(encoding="utf-8")
    except OSError:
        return False
    return "advertised.listeners=SASL_SSL://" in text


def _client_config(layout: _Layout) -> dict[str, str]:
    return _read_properties(layout.client_properties) if _secured(layout) else {}


def _info(layout: _Layout, bootstrap: str, pid: int | None, running: bool) -> BrokerInfo:
    config = _client_config(layout)
    return BrokerInfo(
        bootstrap, pid, layout.log_file, layout.data_dir, running,
        security="sasl-ssl" if config else "plaintext",
        client_config=config,
        client_properties=layout.client_properties if config else None,
    )  # fmt: skip


def _prepare_security(layout: _Layout, formatted: bool) -> str:
    """Make the TLS files and SCRAM users of a secured home; return the broker's password.

    Users are written into the cluster metadata when the storage is formatted, so a home
    formatted without them needs a fresh start.
    """
    from eokafka.devbroker.tls import make_tls

    tls = make_tls(layout.tls_dir)
    users = _read_properties(layout.users)
    if formatted and not users:
        raise BrokerError(
            f"the broker storage in {layout.log_dirs} was formatted without SCRAM users: "
            "start it once with fresh=True (eokafka broker start --security sasl-ssl --fresh)"
        )
    if not users:
        users = {_BROKER_USER: secrets.token_urlsafe(18), CLIENT_USER: secrets.token_urlsafe(18)}
        _write_properties(layout.users, users, "SCRAM-SHA-512 users of this dev broker")
    _write_properties(
        layout.client_properties,
        {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": SCRAM_MECHANISM,
            "sasl.username": CLIENT_USER,
            "sasl.password": users[CLIENT_USER],
            "ssl.ca.location": str(tls.ca),
        },
        "librdkafka settings for this dev broker (eokafka run --config k=v, or EOKAFKA_CONFIG)",
    )
    return users[_BROKER_USER]


def _port_in_use(port: int) -> bool:
    # SO_REUSEADDR mirrors what the JVM does, so TIME_WAIT leftovers of a previous
    # broker do not count as "in use" while a real listener still does.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError:
            return True
    return False


def _answers(
    bootstrap: str, timeout: float = 1.5, config: Mapping[str, str] | None = None
) -> bool:
    """True when the broker serves metadata, i.e. clients can really use it."""
    host, _, port = bootstrap.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=min(timeout, 1.0)):
            pass
    except (OSError, ValueError):
        return False  # cheap pre-check: no AdminClient (and no librdkafka noise) if nothing listens

    def _ignore(_error: KafkaError) -> None:
        """Connection errors during startup are expected; the caller retries."""

    admin = AdminClient(
        {
            **(config or {}),
            "bootstrap.servers": bootstrap,
            "socket.timeout.ms": max(int(timeout * 1000), 100),
            "log_level": 0,
            "error_cb": _ignore,
        }
    )
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return bool(metadata.brokers)


# Popen objects of brokers started by this process: polling them reaps the child, so a
# broker stopped from the same process is not mistaken for alive while it is a zombie,
# and its exit code can be reported. One small entry per launch, never pruned.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _alive(pid: int) -> bool:
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


def _is_our_broker(pid: int, layout: _Layout) -> bool:
    """Guard against pid reuse: never signal a process that is not this home's broker."""
    if not _alive(pid):
        return False
    if not Path("/proc/self/cmdline").exists():
        return True  # no procfs (e.g. macOS): the pid file is all we have
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in args and os.fsencode(str(layout.server_properties)) in args


def _read_pid(layout: _Layout) -> int | None:
    try:
        return int(layout.pid_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def _write_pid(layout: _Layout, pid: int) -> None:
    tmp = layout.pid_file.with_suffix(".pid.tmp")
    tmp.write_text(f"{pid}\n", encoding="utf-8")
    os.replace(tmp, layout.pid_file)


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM for a clean shutdown (flushes logs, ends transactions), SIGKILL as last resort."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        if not _wait_exit(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            _wait_exit(pid, 10.0)


def _log_tail(layout: _Layout, offset: int = 0) -> str:
    try:
        with open(layout.log_file, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return "    (no log written)"
    return tail(text)


def _rotate_log(layout: _Layout, force: bool = False) -> None:
    """Keep one previous log so the file does not grow forever across restarts."""
    try:
        size = layout.log_file.stat().st_size
    except FileNotFoundError:
        return
    if force or size > _ROTATE_LOG_BYTES:
        os.replace(layout.log_file, layout.log_file.with_name(layout.log_file.name + ".1"))


def _classpath(libs: Path) -> str:
    return f"{libs}{os.sep}*"  # expanded by the JVM, not a shell


def _log4j_opts(layout: _Layout) -> list[str]:
    return [f"-Dlog4j2.configurationFile={layout.log4j_config}", f"-Dkafka.logs.dir={layout.home}"]


def _new_cluster_id() -> str:
    """Same format as ``kafka-storage random-uuid``, without paying for a JVM start."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cluster_id.startswith("-"):  # would be parsed as a CLI flag
            return cluster_id


def _format_storage(java: str, libs: Path, layout: _Layout) -> None:
    scram = [
        arg
        for user, password in _read_properties(layout.users).items()
        for arg in ("--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password}]")
    ] if _secured(layout) else []  # fmt: skip
    cmd = [
        java, *_log4j_opts(layout), "-cp", _classpath(libs), "kafka.tools.StorageTool",
        "format", "-t", _new_cluster_id(), "-c", str(layout.server_properties), *scram,
    ]
    try:
        proc = subprocess.run(
            cmd, cwd=layout.home, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=_FORMAT_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"Formatting {layout.log_dirs} timed out; see {layout.log_file}") from exc
    if proc.returncode != 0:
        raise BrokerError(
            f"Formatting the broker storage in {layout.log_dirs} failed (exit {proc.returncode}); "
            f"retry with fresh=True (eokafka broker start --fresh) to wipe it. "
            f"Output:\n{tail(proc.stdout + proc.stderr)}"
        )


def _launch(java: str, libs: Path, layout: _Layout) -> subprocess.Popen[bytes]:
    cmd = [
        java, "-Xmx1g", "-Xms256m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true", *_log4j_opts(layout),
        *shlex.split(os.environ.get(_JVM_OPTS_ENV, "")),
        "-cp", _classpath(libs), "kafka.Kafka", str(layout.server_properties),
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


def _wait_until_answering(
    pid: int, bootstrap: str, layout: _Layout, timeout: float, log_offset: int
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not _alive(pid):
            child = _CHILDREN.get(pid)
            code = f" with exit code {child.returncode}" if child is not None else ""
            raise BrokerError(
                f"The Kafka broker exited during startup{code}. "
                f"Last lines of {layout.log_file}:\n{_log_tail(layout, log_offset)}"
            )
        if _answers(bootstrap, config=_client_config(layout)):
            return
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"The Kafka broker (pid {pid}) did not answer on {bootstrap} "
                f"within {timeout:.0f}s. "
                f"Last lines of {layout.log_file}:\n{_log_tail(layout, log_offset)}"
            )
        time.sleep(0.2)


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
    layout = _Layout(home if home is not None else default_home())
    controller_port = port + 1 if controller_port is None else controller_port
    _validate_ports(port, controller_port)
    layout.home.mkdir(parents=True, exist_ok=True)
    with file_lock(layout.lock_file):
        pid = _read_pid(layout)
        if pid is not None and _is_our_broker(pid, layout):
            if not fresh:
                bootstrap = _configured_bootstrap(layout) or f"{_HOST}:{port}"
                _wait_until_answering(pid, bootstrap, layout, timeout, log_offset=0)
                return _info(layout, bootstrap, pid, True)
            _terminate(pid, 30.0)
        layout.pid_file.unlink(missing_ok=True)

        for value, role in ((port, "client"), (controller_port, "controller")):
            if _port_in_use(value):
                raise BrokerError(
                    f"Port {value} on {_HOST} (Kafka {role} listener) is already in use: "
                    f"stop whatever listens there or start the broker on another port"
                )
        java = find_java()
        check_java_version(java)
        libs = ensure_libs()

        if fresh:
            shutil.rmtree(layout.data_dir, ignore_errors=True)
            layout.users.unlink(missing_ok=True)  # new storage, new SCRAM passwords
        _rotate_log(layout, force=fresh)
        layout.data_dir.mkdir(parents=True, exist_ok=True)
        layout.log4j_config.write_text(resource_text("log4j2.properties"), encoding="utf-8")
        formatted = (layout.log_dirs / "meta.properties").is_file()
        broker_password = (
            _prepare_security(layout, formatted) if security == "sasl-ssl" else None
        )
        layout.server_properties.write_text(
            _render_server_properties(
                layout, port, controller_port, broker_password, advertised
            ),
            encoding="utf-8",
        )
        if not (layout.log_dirs / "meta.properties").is_file():
            _format_storage(java, libs, layout)

        bootstrap = f"{_HOST}:{port}"
        log_offset = layout.log_file.stat().st_size if layout.log_file.exists() else 0
        proc = _launch(java, libs, layout)
        _write_pid(layout, proc.pid)
        try:
            _wait_until_answering(proc.pid, bootstrap, layout, timeout, log_offset)
        except BaseException:
            # Covers timeouts and Ctrl-C alike: never leave a half-started JVM behind.
            _terminate(proc.pid, 10.0)
            layout.pid_file.unlink(missing_ok=True)
            raise
        return _info(layout, advertised or bootstrap, proc.pid, True)


def stop_broker(home: Path | None = None, timeout: float = 30.0) -> bool:
    """Stop the dev broker of ``home``; True if one was running and has been stopped."""
    layout = _Layout(home if home is not None else default_home())
    if not layout.home.is_dir():
        return False
    with file_lock(layout.lock_file):
        pid = _read_pid(layout)
        if pid is None:
            return False
        if not _is_our_broker(pid, layout):
            layout.pid_file.unlink(missing_ok=True)  # stale: the broker died on its own
            return False
        _terminate(pid, timeout)
        if _alive(pid):
            raise BrokerError(
                f"Kafka broker pid {pid} is still alive after SIGKILL: check `ps {pid}`"
            )
        layout.pid_file.unlink(missing_ok=True)
        return True


def broker_status(home: Path | None = None) -> BrokerInfo:
    """Report on the dev broker of ``home`` without changing anything."""
    layout = _Layout(home if home is not None else default_home())
    bootstrap = _configured_bootstrap(layout) or f"{_HOST}:9092"
    pid = _read_pid(layout)
    alive = pid is not None and _is_our_broker(pid, layout)
    running = alive and _answers(bootstrap, config=_client_config(layout))
    return _info(layout, bootstrap, pid if alive else None, running)


def signal_broker(home: Path | None, sig: int, timeout: float = 30.0) -> int:
    """Send ``sig`` to the dev broker of ``home`` and return its pid; for fault injection.

    Tests pause (SIGSTOP, SIGCONT) or crash (SIGKILL) the broker this way, then restart a
    killed one with ``start_broker`` on the same home and port: it recovers its data dir.
    After SIGKILL this waits until the process is gone, so its ports are free again.
    """
    layout = _Layout(home if home is not None else default_home())
    pid = _read_pid(layout)
    if pid is None or not _is_our_broker(pid, layout):
        raise BrokerError(f"no dev broker is running from {layout.home}")
    os.kill(pid, sig)
    if sig == signal.SIGKILL and not _wait_exit(pid, timeout):
        raise BrokerError(f"Kafka broker pid {pid} is still alive {timeout:.0f}s after SIGKILL")
    return pid
