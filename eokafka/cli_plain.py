"""How the commands print an error and exit, without a CLI framework.

``eokafka run`` with a plain command line parses and starts without typer (cli_run_start.py):
typer builds a pydantic validator per option when it parses, which costs a worker more CPU at
start-up than the rest of its imports. The other commands use the same ``fail`` through
cli_common.py. Colour only on a terminal, as click does.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from eokafka import redact

_RED, _RESET = "\x1b[31m", "\x1b[0m"


def fail(exc: BaseException | str, code: int = 1) -> NoReturn:
    """Print ``error: ...`` on stderr, secrets scrubbed, and exit with ``code``."""
    text = redact.scrub(f"error: {exc}")
    if sys.stderr.isatty():
        text = f"{_RED}{text}{_RESET}"
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
    raise SystemExit(code)
