"""The broker's jars and JVM: Maven fetches the Kafka jars once into a shared cache.

The jars are shared by all broker homes under ``<cache>/eokafka/kafka-<version>/libs``; the
version comes from the packaged pom.xml, one source of truth with docker-compose.yml.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from pathlib import Path

from eokafka.devbroker.errors import BrokerError

_PACKAGE = "eokafka.devbroker"
_POM_NS = "{http://maven.apache.org/POM/4.0.0}"
_LOG_TAIL_LINES = 20
_MVN_TIMEOUT_S = 900.0
_JAVA_HINT = "install a JDK 17+ (apt-get install openjdk-17-jre-headless)"
_MVN_HINT = "install Maven (apt-get install maven)"


def user_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg)
    return Path.home() / ".cache"


def resource_text(name: str) -> str:
    return resources.files(_PACKAGE).joinpath(name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def kafka_version() -> str:
    """Kafka version of the dev broker, read from pom.xml so there is one source of truth."""
    root = ET.fromstring(resource_text("pom.xml"))
    node = root.find(f"{_POM_NS}properties/{_POM_NS}kafka.version")
    if node is None or not (node.text or "").strip():
        raise BrokerError(
            "eokafka/devbroker/pom.xml has no kafka.version property: reinstall eokafka"
        )
    return (node.text or "").strip()


def libs_dir() -> Path:
    return user_cache_dir() / "eokafka" / f"kafka-{kafka_version()}" / "libs"


def _libs_complete(libs: Path) -> bool:
    version = kafka_version()
    return (libs / f"kafka_2.13-{version}.jar").is_file() and (
        libs / f"kafka-clients-{version}.jar"
    ).is_file()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise downloads and start/stop across processes (CLI, parallel test sessions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(f"    {line}" for line in kept) or "    (no output)"


def ensure_libs() -> Path:
    """Return the cached broker classpath, running Maven only if it is not there yet.

    Maven writes into a private staging directory that is renamed into place at the
    end, so an interrupted download is never mistaken for a usable classpath.
    """
    libs = libs_dir()
    if _libs_complete(libs):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            f"Maven (mvn) not found on PATH: it is needed once to download the Kafka "
            f"{kafka_version()} jars into {libs}; {_MVN_HINT}"
        )
    with file_lock(libs.parent / ".download.lock"):
        if _libs_complete(libs):  # another process finished the download meanwhile
            return libs
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=libs.parent))
        try:
            pom = staging / "pom.xml"
            pom.write_text(resource_text("pom.xml"), encoding="utf-8")
            cmd = [
                mvn, "-q", "-B", "dependency:copy-dependencies",
                f"-DoutputDirectory={staging / 'libs'}", "-DincludeScope=runtime", "-f", str(pom),
            ]
            try:
                proc = subprocess.run(
                    cmd, cwd=staging, stdin=subprocess.DEVNULL, capture_output=True,
                    text=True, timeout=_MVN_TIMEOUT_S, check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise BrokerError(
                    f"Maven did not finish downloading the Kafka jars within "
                    f"{_MVN_TIMEOUT_S:.0f}s: check that Maven Central (or your mirror in "
                    "~/.m2/settings.xml) is reachable"
                ) from exc
            output = (proc.stdout or "") + (proc.stderr or "")
            if proc.returncode != 0:
                raise BrokerError(
                    f"Maven failed (exit {proc.returncode}) downloading the Kafka "
                    f"{kafka_version()} jars; check that Maven Central (or your mirror in "
                    "~/.m2/settings.xml) is "
                    f"reachable, then retry. Last lines of mvn output:\n{tail(output, 30)}"
                )
            if not _libs_complete(staging / "libs"):
                raise BrokerError(
                    f"Maven ran but produced no Kafka {kafka_version()} jars in "
                    f"{staging / 'libs'}; mvn output:\n{tail(output, 30)}"
                )
            if libs.exists():  # an incomplete leftover from an older layout
                shutil.rmtree(libs)
            os.rename(staging / "libs", libs)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return libs


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise BrokerError(f"Java not found on PATH: {_JAVA_HINT}")
    return found


def check_java_version(java: str) -> None:
    """Fail with a clear message instead of an UnsupportedClassVersionError in the log."""
    try:
        proc = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerError(f"Could not run '{java} -version' ({exc}): {_JAVA_HINT}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if match is None:
        return  # unknown vendor format: let the JVM itself decide
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    if major < 17:
        raise BrokerError(
            f"Kafka {kafka_version()} needs Java 17+, but {java} is Java {major}: "
            f"{_JAVA_HINT}, or point JAVA_HOME at one"
        )
