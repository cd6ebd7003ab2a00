"""Certificate matching (`tokensvc.clientauth.mtls`, `tokensvc.subjectdn`; RFC 8705 §2): the
chain to the client CA, the one registered name, the self-signed key, and the DN rule."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from joserfc.jwk import ECKey

from tests.certificates import NOW, Issued, ca, leaf, name
from tokensvc import subjectdn
from tokensvc.clientauth.mtls import VERIFIED_TTL, CertificateMatcher
from tokensvc.errors import InvalidClient
from tokensvc.models import Client, Credentials


class Clock:
    def __init__(self) -> None:
        self.now = NOW.timestamp()

    def __call__(self) -> float:
        return self.now


def client(method: str = "tls_client_auth", **credentials: Any) -> Client:
    return Client(
        "c1",
        "App",
        method,
        frozenset({"client_credentials"}),
        credentials=Credentials(**credentials),
    )


@pytest.fixture(scope="module")
def root() -> Issued:
    return ca("Unit Root")


def refused(matcher: CertificateMatcher, c: Client, cert: x509.Certificate) -> str:
    with pytest.raises(InvalidClient) as info:
        matcher.check(c, cert)
    return info.value.description


# ------------------------------------------------------------------------ the chain


def test_a_certificate_of_the_ca_with_the_name_passes(root: Issued) -> None:
    matcher = CertificateMatcher([root.cert])
    cert = leaf(root, "svc", dns=("svc.example",), uris=("spiffe://example.org/svc",))
    matcher.check(client(tls_san_dns="SVC.example"), cert.cert)  # DNS names ignore case
    matcher.check(client(tls_san_uri="spiffe://example.org/svc"), cert.cert)
    matcher.check(client(tls_subject_dn="CN=svc,O=Example\\, Inc,C=DE"), cert.cert)


def test_no_client_ca_means_no_tls_client_auth(root: Issued) -> None:
    message = refused(CertificateMatcher(), client(tls_san_dns="a"), leaf(root).cert)
    assert "no client CA" in message


def test_another_ca_expired_or_not_for_clients_is_refused(root: Issued) -> None:
    matcher = CertificateMatcher([root.cert])
    c = client(tls_subject_dn="CN=client,O=Example\\, Inc,C=DE")
    for cert in (
        leaf(ca("Other"), "client"),
        leaf(root, "client", days=(-10, -1)),
        leaf(root, "client", days=(1, 10)),  # not yet valid
        leaf(root, "client", eku=ExtendedKeyUsageOID.SERVER_AUTH),
        leaf(None, "client"),
    ):
        assert "trusted client CA" in refused(matcher, c, cert.cert)


def test_an_intermediate_in_the_bundle_and_a_relaxed_private_ca(root: Issued) -> None:
    """A private CA without key usage and with a non-critical basicConstraints (common with
    `openssl req -x509`) is accepted, as OpenSSL accepts it in the handshake."""
    bare = _bare_ca("Bare CA")
    matcher = CertificateMatcher([bare.cert])
    matcher.check(client(tls_san_dns="a.example"), leaf(bare, dns=("a.example",)).cert)
    intermediate = _intermediate(root, "Issuing CA")
    matcher = CertificateMatcher([root.cert, intermediate.cert])
    matcher.check(client(tls_san_dns="b.example"), leaf(intermediate, dns=("b.example",)).cert)
    # Only the root in the bundle: the service sees no intermediates (README), so it fails.
    only_root = CertificateMatcher([root.cert])
    refused(only_root, client(tls_san_dns="b.example"), leaf(intermediate, dns=("b.example",)).cert)


def test_a_verified_chain_is_remembered_but_not_past_expiry(root: Issued) -> None:
    clock = Clock()
    matcher = CertificateMatcher([root.cert], clock=clock)
    c = client(tls_san_dns="a.example")
    cert = leaf(root, dns=("a.example",), days=(-1, 1)).cert
    matcher.check(c, cert)
    clock.now += VERIFIED_TTL - 1
    matcher.check(c, cert)  # from memory
    clock.now += 2 * 86400  # past the certificate's expiry: verified again, and refused
    refused(matcher, c, cert)


# ------------------------------------------------------------------------ self-signed


def _jwk(issued: Issued) -> dict[str, Any]:
    pem = issued.cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ECKey.import_key(pem).as_dict(private=False)


def test_self_signed_matches_a_registered_key_and_its_validity() -> None:
    clock = Clock()
    matcher = CertificateMatcher(clock=clock)  # no CA needed
    cert = leaf(None, "self", days=(-1, 1))
    c = client("self_signed_tls_client_auth", jwks={"keys": [_jwk(leaf(None)), _jwk(cert)]})
    matcher.check(c, cert.cert)
    assert "not one of" in refused(matcher, c, leaf(None, "other").cert)
    clock.now += 2 * 86400
    assert "not valid at this time" in refused(matcher, c, cert.cert)


def test_self_signed_keys_follow_a_changed_registration() -> None:
    matcher = CertificateMatcher()
    first, second = leaf(None, "a"), leaf(None, "b")
    matcher.check(client("self_signed_tls_client_auth", jwks={"keys": [_jwk(first)]}), first.cert)
    changed = client("self_signed_tls_client_auth", jwks={"keys": [_jwk(second)]})
    refused(matcher, changed, first.cert)
    matcher.check(changed, second.cert)


def test_self_signed_with_a_jwks_uri_is_refused_with_the_reason() -> None:
    c = client("self_signed_tls_client_auth", jwks_uri="https://keys.example/jwks")
    assert "jwks_uri" in refused(CertificateMatcher(), c, leaf(None).cert)


# ------------------------------------------------------------------------ the DN rule


# C=DE, O=Example, Inc, OU=payments, CN=api (DER order; RFC 4514 writes it reversed)
SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, Inc"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "payments"),
        x509.NameAttribute(NameOID.COMMON_NAME, "api"),
    ]
)


@pytest.mark.parametrize(
    "registered",
    [
        "CN=api,OU=payments,O=Example\\, Inc,C=DE",
        "cn=api, ou=payments, o=Example\\, Inc, c=DE",
        "CN = api , OU = payments,O=Example\\2C Inc,C=DE",
        "2.5.4.3=api,2.5.4.11=payments,2.5.4.10=Example\\, Inc,2.5.4.6=DE",
    ],
)
def test_dn_spellings_of_one_name(registered: str) -> None:
    assert subjectdn.parse(registered) == subjectdn.of_name(SUBJECT)
    assert subjectdn.parse(SUBJECT.rfc4514_string()) == subjectdn.of_name(SUBJECT)


@pytest.mark.parametrize(
    "other",
    [
        "CN=API,OU=payments,O=Example\\, Inc,C=DE",  # values are case-sensitive
        "OU=payments,CN=api,O=Example\\, Inc,C=DE",  # order matters
        "CN=api,O=Example\\, Inc,C=DE",  # an RDN missing
        "CN=api+OU=payments,O=Example\\, Inc,C=DE",  # one multi-valued RDN is not two
        "CN=api\\ ,OU=payments,O=Example\\, Inc,C=DE",  # an escaped space is significant
    ],
)
def test_dns_that_differ(other: str) -> None:
    assert subjectdn.parse(other) != subjectdn.of_name(SUBJECT)


def test_multi_valued_rdns_and_utf8() -> None:
    subject = x509.Name(
        [
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "café"),
                    x509.NameAttribute(NameOID.SERIAL_NUMBER, "42"),
                ]
            )
        ]
    )
    assert subjectdn.parse("SERIALNUMBER=42+CN=caf\\C3\\A9") == subjectdn.of_name(subject)
    assert subjectdn.parse("CN=café+SERIALNUMBER=42") == subjectdn.of_name(subject)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " ",
        "CN",
        "CN=",
        "XX=a",
        "CN=a;O=b",
        "CN=a,,O=b",
        "CN=#0403",
        "CN=\\zz",
        "CN=\\C3",
        "CN=a+CN=a",
    ],
)
def test_malformed_dns_are_refused(bad: str) -> None:
    with pytest.raises(subjectdn.BadDN):
        subjectdn.parse(bad)


def test_a_malformed_registered_dn_is_invalid_client(root: Issued) -> None:
    assert "subject DN" in refused(
        CertificateMatcher([root.cert]), client(tls_subject_dn="CN=a;O=b"), leaf(root).cert
    )


# ------------------------------------------------------------------------ helpers


def _bare_ca(cn: str) -> Issued:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def _intermediate(root: Issued, cn: str) -> Issued:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()),
            critical=False,
        )
        .sign(root.key, hashes.SHA256())
    )
    return Issued(cert, key)


def test_client_add_refuses_a_dn_that_could_never_match() -> None:
    from tokensvc.registration import RegistrationError, new_client

    def register(dn: str) -> Client:
        return new_client(
            name="svc",
            grant_types=["client_credentials"],
            auth_method="tls_client_auth",
            credentials=Credentials(tls_subject_dn=dn),
        )[0]

    assert register("CN=api, O=Example\\, Inc").credentials.tls_subject_dn
    with pytest.raises(RegistrationError, match="--tls-subject-dn"):
        register("CN=api;O=Example")
