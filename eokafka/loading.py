"""Where ``eokafka run module:app`` finds the app: import the module, take the App it names.

The CLI loads the app here; the runtime never imports :mod:`eokafka.app` (it takes a
topology and the settings), so the app and the runtime don't import each other.
"""

from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path

from eokafka.app import App
from eokafka.errors import ConfigError
from eokafka.topology import Topology


def load_app(target: str) -> App:
    """Import ``module:attribute`` and return the App it names."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{target!r}: expected module:app, e.g. mymodule:app")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name + ".").startswith(exc.name + "."):
            raise  # the app's module exists but imports something missing: show where
        raise ConfigError(
            f"{target!r}: no module named {module_name!r} in {Path.cwd()} or on PYTHONPATH"
        ) from exc
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise ConfigError(f"{target!r}: {module_name}.{attr} is not an eokafka.App")
    return app


def load_topology(target: str) -> Topology:
    """The topology of the App ``module:attribute`` names (what a worker process runs)."""
    return load_app(target).topology
