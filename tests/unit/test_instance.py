"""Stable instance ids: same id across restarts, distinct ids for live workers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from eokafka.config import resolve
from eokafka.runtime.process.instance import resolve_instance_id


def test_explicit_instance_id_is_used_as_is_or_suffixed_per_process(tmp_path: Path) -> None:
    one = resolve("a", {"instance_id": "blue", "state_dir": str(tmp_path)}, env={})
    assert resolve_instance_id(one).value == "blue"
    many = one.replace(processes=3)
    assert resolve_instance_id(many, 2).value == "blue-2"


def test_derived_id_is_stable_and_live_workers_never_share_it(tmp_path: Path) -> None:
    s = resolve("a", {"state_dir": str(tmp_path)}, env={})
    first = resolve_instance_id(s)
    second = resolve_instance_id(s)  # first still holds its slot
    assert first.value != second.value
    assert first.value.rsplit("-", 1)[0] == second.value.rsplit("-", 1)[0]
    first_value = first.value
    first.release()
    second.release()
    again = resolve_instance_id(s)
    assert again.value == first_value  # a restart takes the same id back
    again.release()


def test_slot_lock_is_released_when_the_process_dies(tmp_path: Path) -> None:
    code = (
        "import os, sys\n"
        "from eokafka.config import resolve\n"
        "from eokafka.runtime.process.instance import resolve_instance_id\n"
        f"i = resolve_instance_id(resolve('a', {{'state_dir': {str(tmp_path)!r}}}, env={{}}))\n"
        "print(i.value, flush=True)\n"
        "os._exit(0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    s = resolve("a", {"state_dir": str(tmp_path)}, env={})
    mine = resolve_instance_id(s)
    assert mine.value == out.stdout.strip()
    mine.release()


def test_two_state_dirs_get_different_ids(tmp_path: Path) -> None:
    a = resolve_instance_id(resolve("a", {"state_dir": str(tmp_path / "m1")}, env={}))
    b = resolve_instance_id(resolve("a", {"state_dir": str(tmp_path / "m2")}, env={}))
    assert a.value != b.value
