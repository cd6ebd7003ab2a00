"""Throwaway X.509 certificates for `python -m benchmarks tls`, made with `cryptography`: one CA,
a server certificate for 127.0.0.1 (the HTTPS token service), and a client certificate named
by a SPIFFE URI SAN, as a workload's SVID would be (RFC 8705 `tls_client_auth`).

One CA signs both: the service trusts it for client certificates and the kit for the server's.
P-256 keys throughout, so a handshake costs what a production one would (and keep-alive makes
handshakes rare anyway). The tests have their own generator (tests/certificates.py); the kit
does not import the tests.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SAN_URI = "spiffe://bench.example/ns/bench/sa/load"
VALID_DAYS = 7  # a run takes minutes; the files are deleted after it


@dataclass(frozen=True)
class BenchCerts:
    """Where the PEM files are, and the client certificate's RFC 8705 thumbprint."""

    ca: Path  # trusted for client certificates, and to verify the server
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_pem: Path  # certificate, then key: what `ab -E` wants
    client_x5t: str  # `x5t#S256` of the client certificate (base64url SHA-256 of its DER)
    san_uri: str


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tokensvc benchmark"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    """A certificate for `key`, signed by `issuer` (None: self-signed, the CA)."""
    now = dt.datetime.now(dt.UTC)
    issuer_name, signer = (issuer[0].subject, issuer[1]) if issuer else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if issuer:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key())
        builder = builder.add_extension(aki, critical=False)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signer, hashes.SHA256())


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def generate(directory: Path, san_uri: str = SAN_URI) -> BenchCerts:
    """Make the CA, server and client certificates in `directory` (keys mode 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue(
        "tokensvc benchmark CA",
        ca_key,
        None,
        [(x509.BasicConstraints(ca=True, path_length=0), True), (_usage(ca=True), True)],
    )
    leaf: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_usage(ca=False), True),
    ]
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue(
        "127.0.0.1",
        server_key,
        (ca, ca_key),
        [
            *leaf,
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                False,
            ),
        ],
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue(
        "bench-load",
        client_key,
        (ca, ca_key),
        [
            *leaf,
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
            (x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san_uri)]), False),
        ],
    )
    files = {
        "ca.pem": _cert_pem(ca),
        "server.pem": _cert_pem(server),
        "server.key": _key_pem(server_key),
        "client.pem": _cert_pem(client),
        "client.key": _key_pem(client_key),
        "client-with-key.pem": _cert_pem(client) + _key_pem(client_key),
    }
    for filename, data in files.items():
        path = directory / filename
        path.write_bytes(data)
        if filename.endswith(".key") or filename == "client-with-key.pem":
            path.chmod(0o600)
    digest = hashlib.sha256(client.public_bytes(serialization.Encoding.DER)).digest()
    return BenchCerts(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        client_pem=directory / "client-with-key.pem",
        client_x5t=base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
        san_uri=san_uri,
    )
