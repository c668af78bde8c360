"""Keep credentials out of everything eokafka prints: reprs, logs, errors and tracebacks.

Two layers, because a secret can leak by its key (a config dict echoed) or by its value (a
client error or exception text that quotes it). ``redact_config`` hides values by key name;
every secret value a Settings object carries is also remembered in this process, and
``scrub`` replaces it wherever it shows up in a text about to be written.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"
# librdkafka keys that hold credentials: sasl.password, ssl.key.password,
# ssl.keystore.password, sasl.oauthbearer.client.secret, sasl.oauthbearer.config (may carry
# a token), ssl.key.pem (a private key), and anything else named like a secret.
_SECRET_KEY = re.compile(
    r"passw(or)?d|secret|token|credential|api[._-]?key|private|oauthbearer\.config|jaas"
    r"|(^|[._])key\.pem$",
    re.IGNORECASE,
)
_MIN_SCRUBBED = 3  # shorter values would blank out ordinary words
_remembered: set[str] = set()


def is_secret(key: str) -> bool:
    """Whether a config key (with or without a ``consumer.``/``producer.`` prefix) is secret."""
    return bool(_SECRET_KEY.search(key))


def redact_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with the values of secret keys replaced by ``[redacted]``."""
    return {k: (REDACTED if is_secret(str(k)) else v) for k, v in config.items()}


def remember(config: Mapping[str, Any]) -> None:
    """Note the secret values of ``config`` so that ``scrub`` hides them in any text."""
    for key, value in config.items():
        text = str(value)
        if is_secret(str(key)) and len(text) >= _MIN_SCRUBBED:
            _remembered.add(text)


def scrub(text: str) -> str:
    """``text`` with every remembered secret value replaced, longest first."""
    for secret in sorted(_remembered, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class ScrubbingFormatter(logging.Formatter):
    """A log formatter whose output, traceback included, never carries a remembered secret."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def install(handlers: list[logging.Handler], fmt: str) -> None:
    """Give every handler the scrubbing formatter."""
    for handler in handlers:
        handler.setFormatter(ScrubbingFormatter(fmt))
