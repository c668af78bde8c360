"""The secured dev broker's files: a CA, a broker certificate clients can verify, listeners."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding

from eokafka.devbroker.home import Layout, configured_bootstrap, read_properties
from eokafka.devbroker.server_properties import render_server_properties
from eokafka.devbroker.tls import make_tls


def test_the_broker_certificate_is_signed_by_the_ca_for_127_0_0_1(tmp_path: Path) -> None:
    files = make_tls(tmp_path)
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    chain = x509.load_pem_x509_certificates(files.keystore.read_bytes())
    broker = chain[0]
    assert chain[1] == ca
    assert broker.issuer == ca.subject
    ca.public_key().verify(  # type: ignore[union-attr]
        broker.signature,
        broker.tbs_certificate_bytes,
        padding.PKCS1v15(),
        broker.signature_hash_algorithm,  # type: ignore[arg-type]
    )
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert b"BEGIN PRIVATE KEY" in files.keystore.read_bytes()  # PKCS#8, as Kafka's PEM needs
    assert oct(files.keystore.stat().st_mode & 0o777) == "0o600"
    assert make_tls(tmp_path) == files  # kept across restarts


def test_the_secured_listener_is_sasl_ssl_with_scram_and_the_controller_stays_local(
    tmp_path: Path,
) -> None:
    layout = Layout(tmp_path)
    text = render_server_properties(layout, 19500, 19501, broker_password="pw")
    layout.server_properties.write_text(text)
    props = read_properties(layout.server_properties)
    assert props["listeners"] == "SASL_SSL://127.0.0.1:19500,CONTROLLER://127.0.0.1:19501"
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert 'username="broker" password="pw"' in props[
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"
    ]
    assert configured_bootstrap(layout) == "127.0.0.1:19500"
    plain = render_server_properties(layout, 19500, 19501)
    assert "PLAINTEXT://127.0.0.1:19500" in plain and "sasl" not in plain
