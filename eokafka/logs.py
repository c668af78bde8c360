"""Log format shared by the CLI and worker processes; secrets are scrubbed from every line."""

from __future__ import annotations

import logging
import os

from eokafka import redact


def setup_logging(name: str = "eokafka", level: str | None = None) -> None:
    fmt = f"%(asctime)s %(levelname)s {name}[%(process)d] %(name)s: %(message)s"
    logging.basicConfig(
        level=(level or os.environ.get("EOKAFKA_LOG_LEVEL", "INFO")).upper(),
        format=fmt,
        force=True,
    )
    redact.install(logging.getLogger().handlers, fmt)
