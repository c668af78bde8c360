"""Runs the ``eokafka`` command as a user does, in a process of its own, and its output."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from tests.integration.harness import REPO
from tests.kafka_helpers import unique_name

# A bound on a hang (a command that never returns), not a measure of how long one takes.
HANG = 180.0


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return self.err.splitlines()

    def __str__(self) -> str:
        return f"exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"


def command_env(bootstrap: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a user who set EOKAFKA_BOOTSTRAP_SERVERS, and nothing else of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOKAFKA_")}
    env["EOKAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **(extra or {})}


def start(
    args: Iterable[str], bootstrap: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "eokafka", *args],
        cwd=REPO,
        env=command_env(bootstrap, env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(stdin)  # small: fits the pipe before the command reads it
    proc.stdin.close()
    proc.stdin = None  # communicate() must not flush it again
    return proc


def finish(proc: subprocess.Popen[str]) -> Done:
    try:
        out, err = proc.communicate(timeout=HANG)
    finally:
        if proc.poll() is None:
            proc.kill()
    return Done(proc.returncode, out, err)


def eokafka(
    *args: str, bootstrap: str, stdin: str = "", env: dict[str, str] | None = None
) -> Done:
    """Run one command to its end."""
    return finish(start(args, bootstrap, stdin, env))


def app_env(prefix: str) -> dict[str, str]:
    """Fresh names for tests/apps/cli_apps.py: its app id, two inputs and its output."""
    return {
        "TEST_APP_ID": unique_name(prefix),
        "TEST_INPUT": unique_name(f"{prefix}-in"),
        "TEST_INPUT2": unique_name(f"{prefix}-in2"),
        "TEST_OUTPUT": unique_name(f"{prefix}-out"),
    }
