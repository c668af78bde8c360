"""The secured dev broker's SCRAM users, TLS files and SASL_SSL listener settings."""

from __future__ import annotations

import secrets

from eokafka.devbroker.errors import BrokerError
from eokafka.devbroker.home import Layout, read_properties, secured, write_properties

SECURITY_MODES = ("plaintext", "sasl-ssl")
SCRAM_MECHANISM = "SCRAM-SHA-512"
CLIENT_USER = "eokafka"
BROKER_USER = "broker"  # the broker's own SCRAM user (inter-broker: transaction markers)


def sasl_ssl_settings(layout: Layout, broker_password: str) -> dict[str, str]:
    """SCRAM for clients and the broker itself, TLS with the home's own CA."""
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{BROKER_USER}" password="{broker_password}";'
    )
    return {
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
        f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(layout.tls_dir / "broker.pem"),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(layout.tls_dir / "ca.pem"),
        "ssl.client.auth": "none",
    }


def prepare_security(layout: Layout, formatted: bool) -> str:
    """Make the TLS files and SCRAM users of a secured home; return the broker's password.

    Users are written into the cluster metadata when the storage is formatted, so a home
    formatted without them needs a fresh start.
    """
    from eokafka.devbroker.tls import make_tls

    tls = make_tls(layout.tls_dir)
    users = read_properties(layout.users)
    if formatted and not users:
        raise BrokerError(
            f"the broker storage in {layout.log_dirs} was formatted without SCRAM users: "
            "start it once with fresh=True (eokafka broker start --security sasl-ssl --fresh)"
        )
    if not users:
        users = {BROKER_USER: secrets.token_urlsafe(18), CLIENT_USER: secrets.token_urlsafe(18)}
        write_properties(layout.users, users, "SCRAM-SHA-512 users of this dev broker")
    write_properties(
        layout.client_properties,
        {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": SCRAM_MECHANISM,
            "sasl.username": CLIENT_USER,
            "sasl.password": users[CLIENT_USER],
            "ssl.ca.location": str(tls.ca),
        },
        "librdkafka settings for this dev broker (eokafka run --config k=v, or EOKAFKA_CONFIG)",
    )
    return users[BROKER_USER]


def scram_format_args(layout: Layout) -> list[str]:
    """The storage tool's arguments that write a secured home's SCRAM users at format time."""
    return [
        arg
        for user, password in read_properties(layout.users).items()
        for arg in ("--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password}]")
    ] if secured(layout) else []  # fmt: skip
