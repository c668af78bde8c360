"""``eokafka run``'s work, and a parser for its plain command lines that needs no typer.

A worker's start-up is CPU the user pays on every start and restart. Typer builds a pydantic
validator for each option when it parses a command line, which costs more CPU than every
other import of a worker. So ``eokafka.cli.main`` hands a ``run`` command line to
``parse_run`` first: options it knows, spelt ``--name value``, ``--name=value`` or as a flag,
with plain integer and decimal values. Anything else (``--help``, a short option, an unknown
option, a value it does not take as plain, a second target) returns None, and typer parses
the line instead, with its own messages. ``RUN_OPTIONS`` names the options of the typer
command in cli_run.py; a unit test holds the two to the same names, kinds and defaults.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Final

from eokafka.cli_plain import fail

# option -> (parameter of run(), kind, lowest value allowed); kinds: str, int, float,
# "multi" (repeatable str), "flag" (True when given), "bool" (--x True, --no-x False).
RUN_OPTIONS: Final[dict[str, tuple[str, str, float | None]]] = {
    "--bootstrap-servers": ("bootstrap_servers", "str", None),
    "--processes": ("processes", "int", None),
    "--instance-id": ("instance_id", "str", None),
    "--metrics-port": ("metrics_port", "int", None),
    "--state-dir": ("state_dir", "str", None),
    "--on-error": ("on_error", "str", None),
    "--http-port": ("http_port", "int", None),
    "--create-topics": ("create_topics", "bool", None),
    "--partitions": ("partitions", "int", None),
    "--commit-interval-ms": ("commit_interval_ms", "int", None),
    "--transaction-timeout-ms": ("transaction_timeout_ms", "int", None),
    "--num-standby-replicas": ("num_standby_replicas", "int", 0),
    "--config": ("config", "multi", None),
    "--log-level": ("log_level", "str", None),
    "--until-end": ("until_end", "flag", None),
    "--max-records": ("max_records", "int", 1),
    "--max-seconds": ("max_seconds", "float", 0.0),
}
_INT: Final = re.compile(r"[0-9]+")
_FLOAT: Final = re.compile(r"[0-9]+(\.[0-9]+)?")


def run_defaults() -> dict[str, Any]:
    """Every parameter of run() at its default: None ("not given here"), flags False."""
    return {
        param: (False if kind == "flag" else None) for param, kind, _ in RUN_OPTIONS.values()
    }


def parse_run(argv: list[str]) -> dict[str, Any] | None:
    """run()'s keyword arguments from the words after ``run``; None: leave it to typer."""
    out = run_defaults()
    target: str | None = None
    words = iter(argv)
    for word in words:
        if not word.startswith("-"):
            if target is not None:
                return None
            target = word
            continue
        name, eq, text = word.partition("=")
        if name.startswith("--no-") and not eq:
            spec = RUN_OPTIONS.get("--" + name[5:])
            if spec is None or spec[1] != "bool":
                return None
            out[spec[0]] = False
            continue
        spec = RUN_OPTIONS.get(name)
        if spec is None:
            return None
        param, kind, low = spec
        if kind in ("flag", "bool"):
            if eq:
                return None
            out[param] = True
            continue
        value = _value(kind, text if eq else next(words, ""), low)
        if value is None:
            return None
        if kind == "multi":
            out[param] = [*(out[param] or []), value]
        else:
            out[param] = value
    if target is None:
        return None
    return {"target": target, **out}


def _value(kind: str, text: str, low: float | None) -> Any:
    """The value of a word, or None when typer should judge it (also an empty value or one
    that starts with "-", which click may take for an option)."""
    if not text or text.startswith("-"):
        return None
    if kind in ("str", "multi"):
        return text
    pattern = _INT if kind == "int" else _FLOAT
    if not pattern.fullmatch(text):
        return None
    value: int | float = int(text) if kind == "int" else float(text)
    if low is not None and value < low:
        return None
    return value


def start(
    target: str,
    *,
    config: list[str] | None,
    log_level: str | None,
    until_end: bool,
    max_records: int | None,
    max_seconds: float | None,
    **settings: Any,
) -> None:
    """Run an app's workers (the settings left None are decided by the App and the
    environment); a bounded run prints its summary and exits 3 when a signal ended it."""
    from eokafka import toolclients
    from eokafka.config import parse_config_pairs
    from eokafka.errors import EokafkaError
    from eokafka.loading import load_app, load_topology
    from eokafka.logs import setup_logging
    from eokafka.runtime.process.supervisor import run_app

    setup_logging("eokafka", log_level)
    overrides: dict[str, Any] = dict(settings)
    try:
        if config:
            overrides["config"] = parse_config_pairs(config, "--config")
        app = load_app(target)
        resolved = app.settings(overrides)
        bounds = None
        if until_end or max_records is not None or max_seconds is not None:
            from eokafka.runtime.process.bounded import capture  # a bounded run's only

            toolclients.reach(resolved)  # capture reads offsets: first a bounded first contact
            bounds = capture(resolved, app.topology, until_end, max_records, max_seconds)
        summary = run_app(
            app.topology, resolved, target=target, load=load_topology, bounds=bounds
        )
    except EokafkaError as exc:
        fail(exc)
    if summary is not None:
        sys.stdout.write(summary.text() + "\n")
        sys.stdout.flush()
        if summary.reason == "interrupted":
            sys.stderr.write("stopped by a signal before reaching its bound\n")
            raise SystemExit(3)
