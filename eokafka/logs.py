"""Log format shared by the CLI and worker processes, and the home of librdkafka's log lines.

Secrets are scrubbed from every line. librdkafka logs through Python logging (the ``logger``
key of every client's config) under ``eokafka.librdkafka``, never straight to stderr. A broker
that is down makes librdkafka repeat the same line many times a second; :class:`RateLimit`
lets each kind of line through at most once per interval and says how many it held back.
The commands other than ``run`` (topics, produce, consume, reset, ...) print their own
messages only: their librdkafka lines show at ``EOKAFKA_LOG_LEVEL=DEBUG``.
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
# A line librdkafka ends with "retrying" says it handles the condition itself (a transaction
# coordinator still loading on a new broker): DEBUG, since a lasting failure surfaces as
# eokafka's own error or timeout.
_SELF_RETRYING = ": retrying"


def setup_logging(name: str = "eokafka", level: str | None = None) -> None:
    fmt = f"%(asctime)s %(levelname)s {name}[%(process)d] %(name)s: %(message)s"
    logging.basicConfig(
        level=(level or os.environ.get("EOKAFKA_LOG_LEVEL", "INFO")).upper(),
        format=fmt,
        force=True,
    )
    redact.install(logging.getLogger().handlers, fmt)


def setup_command_logging() -> None:
    """A command's own clients: eokafka's warnings and errors on stderr (secrets scrubbed),
    librdkafka's lines only at ``EOKAFKA_LOG_LEVEL=DEBUG``: a command's failure is its one
    error line, not the reconnect attempts librdkafka logs on the way."""
    level = os.environ.get("EOKAFKA_LOG_LEVEL", "WARNING").upper()
    fmt = "%(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, force=True)
    redact.install(logging.getLogger().handlers, fmt)
    quiet = level != "DEBUG"
    logging.getLogger(LIBRDKAFKA_LOGGER).setLevel(logging.CRITICAL + 1 if quiet else logging.DEBUG)


class Throttle:
    """At most one line per kind per ``interval`` seconds, remembering how many it held back."""

    def __init__(
        self,
        interval: float = 10.0,
        max_kinds: int = 1_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.max_kinds = max_kinds
        self._clock = clock
        self._lock = threading.Lock()  # librdkafka threads log too
        self._kinds: dict[object, tuple[float, int]] = {}  # kind -> (next due, held)

    def admit(self, kind: object) -> int | None:
        """None: hold this line back; else let it through, and it should say this many
        like it were held back since the last one."""
        now = self._clock()
        with self._lock:
            due, held = self._kinds.get(kind, (0.0, 0))
            if now < due:
                self._kinds[kind] = (due, held + 1)
                return None
            if len(self._kinds) >= self.max_kinds:
                self._kinds = {k: v for k, v in self._kinds.items() if v[0] > now}
            self._kinds[kind] = (now + self.interval, 0)
        return held

    def held_text(self, held: int, what: str = "like it") -> str:
        return f" ({held} more {what} in the last {self.interval:.0f}s)" if held else ""


class RateLimit(logging.Filter):
    """A librdkafka line of a kind at most once per ``interval`` seconds; the next one let
    through says how many were held back. A kind is the facility and the message with
    numbers blanked (``after 0ms`` and ``after 3ms`` are the same line). Also a sane level
    for retried connection failures."""

    def __init__(
        self,
        interval: float = 10.0,
        max_kinds: int = 1_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.throttle = Throttle(interval, max_kinds, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        facility = str(args[0]) if args else ""
        text = str(args[-1]) if args else record.getMessage()
        if facility in _RETRIED and record.levelno == logging.ERROR:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        if text.endswith(_SELF_RETRYING):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
                return False
        held = self.throttle.admit((facility, _DIGITS.sub("#", text)))
        if held is None:
            return False
        record.msg = f"{record.msg}{self.throttle.held_text(held)}"
        return True


_setup_lock = threading.Lock()


def librdkafka_logger() -> logging.Logger:
    """The logger every librdkafka client of this process logs to, rate-limited once."""
    logger = logging.getLogger(LIBRDKAFKA_LOGGER)
    with _setup_lock:
        if not any(isinstance(f, RateLimit) for f in logger.filters):
            logger.addFilter(RateLimit())
    return logger
