"""Where ``eokafka run module:app`` finds the app, with errors that point into the user's file.

The CLI loads the app here; the runtime never imports :mod:`eokafka.app` (it takes a
topology and the settings, and a worker process calls ``load_topology``), so the app and
the runtime don't import each other.

The import runs the user's module: a syntax error or an exception there is reported as one
message naming the user's file, line and the error (not a traceback through the CLI). A
target that names nothing, or something that is not an App, lists the Apps the module has.
A module found elsewhere than the user's file of that name (the standard library's ``copy``
for an app in ``copy.py``, which Python imported before the app) is named as such.
"""

from __future__ import annotations

import linecache
import sys
import sysconfig
import traceback
from importlib import import_module
from pathlib import Path
from types import ModuleType

from eokafka.app import App
from eokafka.errors import ConfigError, EokafkaError
from eokafka.topology import Topology
from eokafka.tracebacks import is_framework, shown_path

_MISSING = object()
# Where Python's own and installed modules live: not the user's file.
_LIBRARIES = tuple(
    str(Path(sysconfig.get_path(k)).resolve()) for k in ("stdlib", "purelib", "platlib")
)


def load_app(target: str) -> App:
    """Import ``module:attribute`` and return the App it names, or raise a ConfigError."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{target!r}: expected module:app, e.g. mymodule:app")
    if "" not in sys.path:
        sys.path.insert(0, "")
    top = module_name.partition(".")[0]
    preloaded = sys.modules.get(top)  # what an import of the name returns, whatever the files
    module = _import(target, module_name)
    if preloaded is not None:
        _refuse_shadowed(target, top, preloaded)
    return _app(target, module_name, module, attr)


def load_topology(target: str) -> Topology:
    """The topology of the App ``module:attribute`` names (what a worker process runs)."""
    return load_app(target).topology


def _import(target: str, module_name: str) -> ModuleType:
    try:
        return import_module(module_name)
    except EokafkaError:
        raise  # a topology declared wrongly: the error names the place already
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise ConfigError(
                f"{target!r}: no module named {module_name!r} in {Path.cwd()} or on PYTHONPATH"
            ) from None
        raise ConfigError(_import_failed(target, module_name, exc)) from None
    except SyntaxError as exc:  # also IndentationError, TabError
        where = f"{shown_path(exc.filename)}:{exc.lineno}" if exc.filename else "?"
        code = f" in `{exc.text.strip()}`" if exc.text and exc.text.strip() else ""
        raise ConfigError(
            f"{target!r}: could not import {module_name}: {where}: "
            f"{type(exc).__name__}: {exc.msg}{code}"
        ) from None
    except Exception as exc:
        raise ConfigError(_import_failed(target, module_name, exc)) from None


def _import_failed(target: str, module_name: str, exc: BaseException) -> str:
    """One line: the user's frame the exception passed through last, and the error."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith("<") and not is_framework(f.filename)
    ]
    own = [f for f in frames if not str(Path(f.filename).resolve()).startswith(_LIBRARIES)]
    frame = (own or frames or [None])[-1]
    where = ""
    if frame is not None:
        line = (frame.line or linecache.getline(frame.filename, frame.lineno or 0)).strip()
        where = f"{shown_path(frame.filename)}:{frame.lineno}" + (f" (`{line}`)" if line else "")
        where += ": "
    return f"{target!r}: could not import {module_name}: {where}{type(exc).__name__}: {exc}"


def _local_file(top: str) -> Path | None:
    for candidate in (Path(f"{top}.py"), Path(top) / "__init__.py"):
        if candidate.is_file():
            return candidate.resolve()
    return None


def _refuse_shadowed(target: str, top: str, found: ModuleType) -> None:
    """The user's ``<name>.py`` lost to a module of that name imported before (stdlib)."""
    local = _local_file(top)
    if local is None:
        return
    origin = getattr(found, "__file__", None)
    if origin is not None and Path(origin).resolve() == local:
        return
    kind = "Python's standard library" if top in sys.stdlib_module_names else "an installed"
    place = f" ({origin})" if origin else " (built in)"
    raise ConfigError(
        f"{target!r}: {top!r} is {kind} module {top}{place}, which Python imported instead of "
        f"your {shown_path(str(local))}: rename your file (e.g. {top}_app.py) and run "
        f"{top}_app:{target.partition(':')[2]}"
    )


def _app(target: str, module_name: str, module: ModuleType, attr: str) -> App:
    apps = sorted(name for name, value in vars(module).items() if isinstance(value, App))
    listing = (
        f"the Apps in {module_name}: {', '.join(apps)}"
        if apps
        else f"{module_name} defines no eokafka.App"
    )
    found = getattr(module, attr, _MISSING)
    origin = getattr(module, "__file__", None)
    where = f" ({shown_path(origin)})" if origin else ""
    if found is _MISSING:
        raise ConfigError(f"{target!r}: {module_name}{where} has no attribute {attr!r}; {listing}")
    if not isinstance(found, App):
        raise ConfigError(
            f"{target!r}: {module_name}.{attr} is of type {type(found).__name__}, not an "
            f"eokafka.App; {listing}"
        )
    return found
