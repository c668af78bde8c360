"""Log format shared by the CLI and worker processes, and the home of librdkafka's log lines.

Secrets are scrubbed from every line. librdkafka logs through Python logging (the ``logger``
key of every client's config) under ``eokafka.librdkafka``, never straight to stderr. A broker
that is down makes librdkafka repeat the same line many times a second; :class:`RateLimit`
lets each kind of line through at most once per interval and says how many it held back.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable

from eokafka import redact

LIBRDKAFKA_LOGGER = "eokafka.librdkafka"
_DIGITS = re.compile(r"\d+")
# Facilities of connection failures that librdkafka retries by itself: a warning, since a
# lasting failure surfaces as eokafka's own error naming the setting to check.
_RETRIED = frozenset({"FAIL", "ERROR"})


def setup_logging(name: str = "eokafka", level: str | None = None) -> None:
    fmt = f"%(asctime)s %(levelname)s {name}[%(process)d] %(name)s: %(message)s"
    logging.basicConfig(
        level=(level or os.environ.get("EOKAFKA_LOG_LEVEL", "INFO")).upper(),
        format=fmt,
        force=True,
    )
    redact.install(logging.getLogger().handlers, fmt)


class RateLimit(logging.Filter):
    """At most one record per kind per ``interval`` seconds; the next one let through says
    how many were held back. A kind is the facility and the message with numbers blanked
    (``after 0ms`` and ``after 3ms`` are the same line). Also a sane level for retried
    connection failures."""

    def __init__(
        self,
        interval: float = 10.0,
        max_kinds: int = 1_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self.max_kinds = max_kinds
        self._lock = threading.Lock()  # librdkafka threads log too
        self._kinds: dict[tuple[str, str], tuple[float, int]] = {}  # kind -> (next due, held)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        facility = str(args[0]) if args else ""
        text = str(args[-1]) if args else record.getMessage()
        if facility in _RETRIED and record.levelno == logging.ERROR:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        kind = (facility, _DIGITS.sub("#", text))
        now = self._clock()
        with self._lock:
            due, held = self._kinds.get(kind, (0.0, 0))
            if now < due:
                self._kinds[kind] = (due, held + 1)
                return False
            if len(self._kinds) >= self.max_kinds:
                self._kinds = {k: v for k, v in self._kinds.items() if v[0] > now}
            self._kinds[kind] = (now + self.interval, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like it in the last {self.interval:.0f}s)"
        return True


_setup_lock = threading.Lock()


def librdkafka_logger() -> logging.Logger:
    """The logger every librdkafka client of this process logs to, rate-limited once."""
    logger = logging.getLogger(LIBRDKAFKA_LOGGER)
    with _setup_lock:
        if not any(isinstance(f, RateLimit) for f in logger.filters):
            logger.addFilter(RateLimit())
    return logger
