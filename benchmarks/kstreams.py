"""The Kafka Streams contender: a small Java app, built with Maven on first use, run as ``java``.

The app (``benchmarks/kstreams/``) does EOS v2 passthrough, count by key, a windowed
stream-stream join or a versioned stream-table join with one stream thread, RocksDB stores and
the record cache off. Maven compiles it into
``benchmarks/kstreams/target`` and fetches its jars into ``~/.m2`` once; later runs reuse
both unless a source file or the pom changed. The build happens before the contender's
clock starts, so it is never part of a measured time.

    python -m benchmarks.kstreams            # build (if needed) and print the classpath
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from benchmarks.common import REPO_ROOT

PROJECT = REPO_ROOT / "benchmarks" / "kstreams"
TARGET = PROJECT / "target"
MAIN_CLASS = "io.eokafka.bench.KStreamsBench"
MVN_TIMEOUT_S = 900
_POM_NS = "{http://maven.apache.org/POM/4.0.0}"


def pom_kafka_version() -> str:
    node = (
        ET.parse(PROJECT / "pom.xml").getroot().find(f"{_POM_NS}properties/{_POM_NS}kafka.version")
    )
    if node is None or not (node.text or "").strip():
        raise RuntimeError(f"{PROJECT / 'pom.xml'} has no kafka.version property")
    return (node.text or "").strip()


def _up_to_date() -> bool:
    """Built, and no source newer than the last successful build (``target/build.stamp``)."""
    main = TARGET / "classes" / (MAIN_CLASS.replace(".", "/") + ".class")
    stamp = TARGET / "build.stamp"
    if not all(f.is_file() for f in (TARGET / "classpath.txt", main, stamp)):
        return False
    sources = [PROJECT / "pom.xml", *(PROJECT / "src").rglob("*")]
    return all(src.stat().st_mtime <= stamp.stat().st_mtime for src in sources)


def ensure_built() -> str:
    """Build the app if needed and return its runtime classpath."""
    from eokafka.devbroker import kafka_version

    if pom_kafka_version() != kafka_version():
        raise RuntimeError(
            f"benchmarks/kstreams/pom.xml has kafka.version {pom_kafka_version()}, the dev "
            f"broker (eokafka/devbroker/pom.xml) {kafka_version()}: make them equal"
        )
    if not _up_to_date():
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("the Kafka Streams contender needs Maven (mvn) on PATH and JDK 17+")
        print("kstreams: building benchmarks/kstreams with Maven ...", file=sys.stderr, flush=True)
        try:
            proc = subprocess.run(
                [mvn, "-q", "-B", "-Dstyle.color=never", "package"],
                cwd=PROJECT,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=MVN_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(
                f"mvn package in {PROJECT} took over {MVN_TIMEOUT_S} s: is Maven Central "
                "(or the mirror in ~/.m2/settings.xml) reachable?"
            ) from exc
        if proc.returncode != 0 or not (TARGET / "classpath.txt").is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
            raise RuntimeError(f"mvn package in {PROJECT} failed (exit {proc.returncode}):\n{tail}")
        (TARGET / "build.stamp").touch()
    jars = (TARGET / "classpath.txt").read_text().strip()
    return f"{TARGET / 'classes'}:{jars}"


def command(
    *,
    mode: str,
    values: str,
    bootstrap: str,
    input: str,
    output: str,
    application_id: str,
    state_dir: Path,
    commit_interval_ms: int,
    batch_size: int,
    more: dict[str, str] | None = None,
) -> list[str]:
    """The ``java`` command line of one run (``mode``: passthrough, count, join or asof;
    ``more``: further options such as ``{"other": topic}``, each given as ``--name value``)."""
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("the Kafka Streams contender needs java (JDK 17+) on PATH")
    options = {
        "bootstrap": bootstrap,
        "input": input,
        "output": output,
        "application-id": application_id,
        "state-dir": str(state_dir),
        "mode": mode,
        "values": values,
        "commit-interval-ms": str(commit_interval_ms),
        "batch-size": str(batch_size),
        **(more or {}),
    }
    return [
        java,
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-cp",
        ensure_built(),
        MAIN_CLASS,
        *(item for k, v in options.items() for item in (f"--{k}", v)),
    ]


if __name__ == "__main__":
    print(ensure_built())
