"""``module:app`` targets that can't be loaded: one message naming the user's file and line."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from eokafka.errors import ConfigError
from eokafka.loading import load_app

APP = "import eokafka\napp = eokafka.App('loading-test')\n"


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty current directory; modules imported from it are forgotten afterwards."""
    monkeypatch.chdir(tmp_path)
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def _module(folder: Path, text: str) -> str:
    name = f"app_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(text)
    return name


def _error(target: str) -> str:
    with pytest.raises(ConfigError) as raised:
        load_app(target)
    message = str(raised.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_an_app_loads(folder: Path) -> None:
    name = _module(folder, APP)
    assert load_app(f"{name}:app").application_id == "loading-test"


def test_a_syntax_error_names_file_line_and_code(folder: Path) -> None:
    name = _module(folder, APP + "\ndef enrich(record, ctx)\n    pass\n")
    message = _error(f"{name}:app")
    assert f"could not import {name}: {name}.py:4: SyntaxError: expected ':'" in message
    assert "`def enrich(record, ctx)`" in message


def test_an_exception_at_import_names_the_users_line(folder: Path) -> None:
    name = _module(folder, APP + "import json\nLIMITS = json.loads('{')\n")
    message = _error(f"{name}:app")
    assert f"{name}.py:4 (`LIMITS = json.loads('{{')`): JSONDecodeError: Expecting" in message


def test_a_missing_dependency_names_the_import_line(folder: Path) -> None:
    name = _module(folder, "import eokafka\nimport no_such_dependency_xyz\n")
    message = _error(f"{name}:app")
    assert f"{name}.py:2 (`import no_such_dependency_xyz`)" in message
    assert "ModuleNotFoundError: No module named 'no_such_dependency_xyz'" in message


def test_a_missing_module_says_where_it_looked(folder: Path) -> None:
    assert f"no module named 'nowhere_xyz' in {folder}" in _error("nowhere_xyz:app")


def test_a_missing_attribute_lists_the_apps(folder: Path) -> None:
    name = _module(folder, APP + "other = eokafka.App('loading-other')\nLIMIT = 3\n")
    message = _error(f"{name}:nope")
    assert f"{name} ({name}.py) has no attribute 'nope'; the Apps in {name}: app, other" in message
    message = _error(f"{name}:LIMIT")
    assert f"{name}.LIMIT is of type int, not an eokafka.App; the Apps in {name}: app" in message
    bare = _module(folder, "X = 1\n")
    assert f"{bare} defines no eokafka.App" in _error(f"{bare}:app")


def test_an_app_file_shadowed_by_the_standard_library_is_named(folder: Path) -> None:
    (folder / "copy.py").write_text(APP)  # the stdlib's copy is imported long before
    message = _error("copy:app")
    assert "'copy' is Python's standard library module copy" in message
    assert "instead of your copy.py: rename your file (e.g. copy_app.py)" in message


def test_a_target_without_a_colon_shows_the_form() -> None:
    assert "expected module:app, e.g. mymodule:app" in _error("mymodule")
