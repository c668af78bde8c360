"""A private CA and a broker certificate for the secured dev broker (SASL_SSL on 127.0.0.1).

Made with Python's ``cryptography`` as PEM files, which both the broker (``ssl.keystore.type
=PEM``) and librdkafka (``ssl.ca.location``) read as they are: no keytool, no JKS passwords.
The certificate names 127.0.0.1 and localhost, so clients verify the host name as they would
against a real cluster.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

_VALID_DAYS = 825
_HINT = "install it with pip install cryptography (it is in eokafka's [test] extra)"


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA certificate: clients' ssl.ca.location, the broker's truststore
    keystore: Path  # the broker's private key, certificate and the CA certificate


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def make_tls(folder: Path) -> TlsFiles:
    """Create (or reuse) ``ca.pem`` and ``broker.pem`` in ``folder``."""
    files = TlsFiles(folder / "ca.pem", folder / "broker.pem")
    if files.ca.is_file() and files.keystore.is_file():
        return files
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as exc:
        from eokafka.devbroker.errors import BrokerError

        raise BrokerError(f"the SASL_SSL dev broker needs cryptography: {_HINT}") from exc

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # tolerate a little clock skew
    until = now + dt.timedelta(days=_VALID_DAYS)

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "eokafka dev broker"),
                x509.NameAttribute(NameOID.COMMON_NAME, common),
            ]
        )

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("eokafka dev CA"))
        .issuer_name(name("eokafka dev CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(files.keystore, key_pem + cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    files.ca.write_bytes(ca_cert.public_bytes(pem))
    return files
