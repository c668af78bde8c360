"""Check a secured cluster takes this worker's credentials before the worker builds clients.

librdkafka treats a refused SASL login or a failed TLS handshake as a transient broker error:
it logs and retries for ever, and a metadata call finally fails with "transport failure",
naming neither the mechanism nor the user. One short-lived admin client catches the error
events instead and turns them into an error that says what is wrong, within seconds.
"""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from eokafka.config import Settings, admin_config
from eokafka.errors import ConfigError

_AUTH_CODES = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED})
_TLS_CODES = frozenset({KafkaError._SSL})
_DEFAULT_TIMEOUT = 30.0


def check_connection(settings: Settings, timeout: float = _DEFAULT_TIMEOUT) -> None:
    """Raise ConfigError when the cluster refuses the login or the TLS handshake.

    Only for ``security.protocol`` other than PLAINTEXT: there nothing can be refused, and
    the worker's own clients report an absent broker as they always do.
    """
    conf = admin_config(settings)
    protocol = str(conf.get("security.protocol", "plaintext")).upper()
    if protocol == "PLAINTEXT":
        return
    errors: list[KafkaError] = []
    conf.update({"error_cb": errors.append, "log_level": 0})  # errors come back here
    admin = AdminClient(conf)
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            return
        except KafkaException as exc:
            errors.append(exc.args[0])
        admin.poll(0.1)
        _raise_refusal(settings, conf, protocol, errors)
        if time.monotonic() >= deadline:
            seen = "; ".join(sorted({e.str() for e in errors})) or "no answer"
            raise ConfigError(
                f"no broker at {settings.bootstrap_servers} answered over {protocol} within "
                f"{timeout:.0f}s: {seen}"
            )


def _raise_refusal(
    settings: Settings, conf: dict[str, object], protocol: str, errors: list[KafkaError]
) -> None:
    for err in errors:
        if err.code() in _AUTH_CODES:
            mechanism = conf.get("sasl.mechanism") or conf.get("sasl.mechanisms") or "GSSAPI"
            user = conf.get("sasl.username")
            raise ConfigError(
                f"{settings.bootstrap_servers} refused the SASL login of user {user!r} with "
                f"mechanism {mechanism} ({protocol}): check sasl.username and sasl.password. "
                f"librdkafka: {err.str()}"
            )
        if err.code() in _TLS_CODES:
            raise ConfigError(
                f"the TLS handshake with {settings.bootstrap_servers} failed ({protocol}): "
                f"check ssl.ca.location (the CA that signed the broker's certificate) and that "
                f"the broker's certificate names the host you connect to. librdkafka: {err.str()}"
            )
