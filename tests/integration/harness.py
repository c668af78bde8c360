"""Real worker processes for integration tests: start, wait, SIGKILL, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.kafka_helpers import create_topic, unique_name

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class AppTopics:
    """Fresh names for one test's app: its id, input and output topics, as the app's env."""

    app_id: str
    src: str
    out: str

    @property
    def env(self) -> dict[str, str]:
        return {"TEST_APP_ID": self.app_id, "TEST_INPUT": self.src, "TEST_OUTPUT": self.out}


def app_topics(
    bootstrap: str, prefix: str, partitions: int, create_output: bool = True
) -> AppTopics:
    names = AppTopics(
        unique_name(prefix), unique_name(f"{prefix}-in"), unique_name(f"{prefix}-out")
    )
    create_topic(bootstrap, names.src, partitions)
    if create_output:
        create_topic(bootstrap, names.out, partitions)
    return names


def wait_for(cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll a condition; fail the test with ``what`` if it never holds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class WorkerProcess:
    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    logs: list[Path] = field(default_factory=list)

    def start(self) -> WorkerProcess:
        self.starts += 1
        path = self.log_path.with_suffix(f".{self.starts}.log")
        self.logs.append(path)
        with open(path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "eokafka", "run", *self.args],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop_quietly(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(30)


def worker(
    target: str,
    bootstrap: str,
    tmp: Path,
    name: str,
    env: dict[str, str],
    extra: list[str] | None = None,
) -> WorkerProcess:
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    full_env.pop("EOKAFKA_TEST_BOOTSTRAP", None)
    args = [
        target,
        "--bootstrap-servers",
        bootstrap,
        "--state-dir",
        str(tmp / "state"),
        *(extra or []),
    ]
    return WorkerProcess(args=args, env=full_env, log_path=tmp / name)
