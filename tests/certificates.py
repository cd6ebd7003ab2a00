"""Real X.509 certificates for the mTLS tests (RFC 8705), made with `cryptography`: CAs, client
certificates named by subject DN, DNS SAN or URI SAN (SPIFFE), self-signed ones, expired ones,
and the files and SSL contexts a TLS client and server need."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import ssl
import textwrap
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC)
Key = ec.EllipticCurvePrivateKey


def name(cn: str, org: str = "Example, Inc", country: str = "DE") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


@dataclass
class Issued:
    cert: x509.Certificate
    key: Key

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def header(self) -> str:
        """The certificate as nginx's `$ssl_client_escaped_cert` forwards it."""
        return quote(self.pem, safe="")

    @property
    def x5t(self) -> str:
        """RFC 8705 §3.1 `x5t#S256`, computed independently of the service."""
        digest = hashlib.sha256(self.der).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    @property
    def secret_parts(self) -> set[str]:
        """Strings that must never reach a log line: the base64 body, the header form, and
        the private key."""
        body = "".join(self.pem.splitlines()[1:-1])
        key = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {body[20:80], self.header[40:120], "".join(key.splitlines()[1:-1])[20:80]}

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert_path.write_text(self.pem)
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


def _builder(
    subject: x509.Name, issuer: x509.Name, key: Key, days: tuple[int, int]
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + dt.timedelta(days=days[0]))
        .not_valid_after(NOW + dt.timedelta(days=days[1]))
    )


def ca(cn: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(name(cn), name(cn), key, (-1, 365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def leaf(
    issuer: Issued | None,
    cn: str = "client",
    *,
    subject: x509.Name | None = None,
    dns: tuple[str, ...] = (),
    uris: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    days: tuple[int, int] = (-1, 30),
    eku: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH,
) -> Issued:
    """A certificate for `cn` signed by `issuer` (None: self-signed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = subject or name(cn)
    builder = _builder(subject, issuer.cert.subject if issuer else subject, key, days)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.UniformResourceIdentifier(u) for u in uris]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    return Issued(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def pem_of(der: bytes) -> str:
    """PEM around any bytes (also ones that are no certificate: for the malformed cases)."""
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def client_context(server_ca: Path, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """What a TLS client of the public listener uses: trusts `server_ca`, shows `client`."""
    context = ssl.create_default_context(cafile=str(server_ca))
    if client is not None:
        context.load_cert_chain(str(client[0]), str(client[1]))
    return context
