"""Log format shared by the CLI and worker processes."""

from __future__ import annotations

import logging
import os


def setup_logging(name: str = "eokafka", level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("EOKAFKA_LOG_LEVEL", "INFO")).upper(),
        format=f"%(asctime)s %(levelname)s {name}[%(process)d] %(name)s: %(message)s",
        force=True,
    )
