"""The README's Quickstart, run as written, line by line, against a broker of its own.

The test reads the Quickstart section of README.md, so the two can't drift apart: its
Python block is saved as the file its first line names (``# mymodule.py``), and each line
of its shell block runs in bash, in that directory, one after the other, as a user pastes
them. ``eokafka`` is this interpreter's ``python -m eokafka`` (what the installed console
script runs). The environment is a fresh machine's but for two variables: the README's
``eokafka broker start`` starts its broker on a free port that ``EOKAFKA_BOOTSTRAP_SERVERS``
names (every eokafka command reads it) and in a home of its own (``EOKAFKA_BROKER_HOME``),
so the README's topic names and app id are new to that broker. The last ``consume`` must
print the records the README promises (their timestamps aside), and no command may print
anything on stderr but its own messages.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from eokafka.devbroker import stop_broker
from tests.conftest import _free_port_pair

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"
# A worker's own log lines: "<date> <time> LEVEL eokafka[pid] <logger>: ..."
WORKER_LOG = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ (DEBUG|INFO|WARNING) eokafka\[\d+\] (\S+): ")


def quickstart() -> tuple[str, str, list[str], list[dict]]:
    """(file name, Python code, shell lines, promised output records) of the Quickstart."""
    text = README.read_text()
    section = text.split("\n## Quickstart\n", 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    blocks = dict(re.findall(r"```(\w+)\n(.*?)```", section, re.DOTALL)[::-1])  # first wins
    code, shell, output = blocks["python"], blocks["bash"], blocks["json"]
    name = code.splitlines()[0].removeprefix("#").strip()
    lines = [line for line in shell.splitlines() if line.strip() and not line.startswith("#")]
    return name, code, lines, [json.loads(line) for line in output.splitlines() if line]


def _without_timestamp(record: dict) -> dict:
    assert isinstance(record.pop("timestamp"), int)
    return record


def test_the_quickstart_runs_as_written(tmp_path: Path) -> None:
    name, code, lines, promised = quickstart()
    assert name == "mymodule.py" and lines[0].startswith("eokafka broker start")
    work = tmp_path / "work"
    work.mkdir()
    (work / name).write_text(code)
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "eokafka").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m eokafka "$@"\n')
    (shim / "eokafka").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOKAFKA_")}
    env.update(
        PATH=f"{shim}{os.pathsep}{env['PATH']}",
        EOKAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{_free_port_pair()}",
        EOKAFKA_BROKER_HOME=str(tmp_path / "broker"),
        XDG_STATE_HOME=str(tmp_path / "state"),
    )
    out = ""
    try:
        for line in lines:
            done = subprocess.run(
                ["bash", "-o", "pipefail", "-c", line],
                cwd=work, env=env, capture_output=True, text=True,
                timeout=300,  # a bound on a hang (a broker's first start), not a measure
            )  # fmt: skip
            said = f"$ {line}\n{done.stdout}{done.stderr}"
            assert done.returncode == 0, said
            if line.startswith("eokafka run"):
                for log_line in done.stderr.splitlines():
                    match = WORKER_LOG.match(log_line)
                    assert match and match[2] != "eokafka.librdkafka", said
            else:
                assert done.stderr == "", said
            if line.startswith("eokafka consume"):
                out = done.stdout
    finally:
        stop_broker(tmp_path / "broker")
    consumed = [json.loads(line) for line in out.splitlines()]
    key = lambda r: (r["partition"], r["offset"])  # noqa: E731
    got = sorted((_without_timestamp(r) for r in consumed), key=key)
    assert got == sorted((_without_timestamp(r) for r in promised), key=key)
