"""Client authentication with an X.509 certificate (RFC 8705 §2): the `CertificateCheck` of
`tokensvc.clientauth`.

* `tls_client_auth` (§2.1): the certificate chains to a CA of `TOKENSVC_TLS_CLIENT_CA_FILE`
  (verified here with `cryptography.x509.verification`, whether the certificate came from
  this listener's handshake or from a trusted proxy's header) and carries the ONE name the
  client registered (§2.1.2): its subject DN (`tokensvc.subjectdn` has the exact rule), a
  `dNSName` SAN (compared case-insensitively, no wildcard expansion) or a
  `uniformResourceIdentifier` SAN (compared exactly: a SPIFFE ID such as
  `spiffe://example.org/ns/payments/sa/api`).
* `self_signed_tls_client_auth` (§2.2): no chain; the certificate is within its validity
  period and its public key is one of the client's registered JWKS (`jwks`, inline). A client
  registered with a `jwks_uri` is refused with a clear `invalid_client`: its keys are not
  fetched for this method.

Chain verification costs about as much as a whole `/token` request, so a verified
certificate is remembered (by its DER) for up to five minutes, never past the expiry of any
certificate of its chain; the CA bundle is read once, when the listener is built.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import verification
from cryptography.x509.oid import ExtensionOID

from tokensvc import subjectdn
from tokensvc.errors import InvalidClient
from tokensvc.models import Client, Credentials
from tokensvc.publickeys import BadKeys, public_keys

VERIFIED_TTL = 300.0  # seconds a verified chain is trusted without verifying it again
VERIFIED_MAX = 10_000  # certificates remembered at once


def _basic_constraints(policy: Any, cert: x509.Certificate, ext: Any) -> None:
    if not isinstance(ext, x509.BasicConstraints) or not ext.ca:
        raise ValueError("an issuer must be a CA")


def _key_usage(policy: Any, cert: x509.Certificate, ext: Any) -> None:
    if isinstance(ext, x509.KeyUsage) and not ext.key_cert_sign:
        raise ValueError("an issuer's key usage must allow certificate signing")


# The Web PKI rules of `cryptography`, relaxed where private client CAs commonly differ (and
# where OpenSSL, which checked the handshake, does not insist): an issuer needs basic
# constraints with CA set, but not critical, and may lack key usage; a client certificate may
# lack SANs (it may be known by its subject DN alone) and an authority key identifier. An
# extended key usage, when present, must allow clientAuth (the client verifier checks that).
_CA_POLICY = (
    verification.ExtensionPolicy.webpki_defaults_ca()
    .require_present(x509.BasicConstraints, verification.Criticality.AGNOSTIC, _basic_constraints)
    .may_be_present(x509.KeyUsage, verification.Criticality.AGNOSTIC, _key_usage)
)
_EE_POLICY = (
    verification.ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.SubjectAlternativeName, verification.Criticality.AGNOSTIC, None)
    .may_be_present(x509.AuthorityKeyIdentifier, verification.Criticality.AGNOSTIC, None)
)


@dataclass(slots=True)
class _Keys:
    jwks: dict[str, Any]
    spki: frozenset[bytes]


class CertificateMatcher:
    """Built once per listener (`tokensvc.http.apps`); `client_ca` is the parsed bundle of
    `TOKENSVC_TLS_CLIENT_CA_FILE` (empty: `tls_client_auth` is refused)."""

    def __init__(
        self,
        client_ca: Sequence[x509.Certificate] = (),
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = verification.Store(list(client_ca)) if client_ca else None
        self._clock = clock
        self._verified: dict[x509.Certificate, float] = {}
        self._keys: dict[str, _Keys] = {}

    @classmethod
    def from_file(
        cls, path: str | None, *, clock: Callable[[], float] = time.time
    ) -> CertificateMatcher:
        """The matcher for the CA bundle at `path` (checked by `tokensvc.config` at start)."""
        if path is None:
            return cls(clock=clock)
        with open(path, "rb") as file:
            return cls(x509.load_pem_x509_certificates(file.read()), clock=clock)

    def check(self, client: Client, certificate: x509.Certificate) -> None:
        """Return if `certificate` authenticates `client` by its registered method."""
        try:
            if client.auth_method == "tls_client_auth":
                self._chain(certificate)
                _name(client.credentials, certificate)
            elif client.auth_method == "self_signed_tls_client_auth":
                self._in_validity(certificate)
                self._key(client, certificate)
            else:
                raise InvalidClient(f"The client is registered for {client.auth_method}.")
        except InvalidClient:
            raise
        except Exception as exc:  # a part parsed only now (an extension, the key)
            raise InvalidClient(
                "The client certificate cannot be read.", detail=type(exc).__name__
            ) from None

    # ------------------------------------------------------------------ tls_client_auth

    def _chain(self, certificate: x509.Certificate) -> None:
        """RFC 8705 §2.1: the certificate chains to a configured client CA, now."""
        if self._store is None:
            raise InvalidClient(
                "tls_client_auth is not available: no client CA is configured.",
                detail="no TOKENSVC_TLS_CLIENT_CA_FILE",
            )
        now = self._clock()
        until = self._verified.get(certificate)
        if until is not None and now < until:
            return
        verifier = (
            verification.PolicyBuilder()
            .store(self._store)
            .time(dt.datetime.fromtimestamp(now, dt.UTC))
            .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(certificate, [])
        except verification.VerificationError as exc:
            # The reason, without the "(encountered processing <Certificate(subject=...)>)"
            reason = str(exc).split(" (encountered", 1)[0][:200]
            raise InvalidClient(
                "The client certificate is not issued by a trusted client CA.", detail=reason
            ) from None
        expires = min(c.not_valid_after_utc.timestamp() for c in verified.chain)
        if len(self._verified) >= VERIFIED_MAX:
            self._verified = {c: t for c, t in self._verified.items() if t > now}
            if len(self._verified) >= VERIFIED_MAX:
                self._verified.pop(next(iter(self._verified)))
        self._verified[certificate] = min(expires, now + VERIFIED_TTL)

    # ------------------------------------------------------------------ self-signed

    def _in_validity(self, certificate: x509.Certificate) -> None:
        now = self._clock()
        if not (
            certificate.not_valid_before_utc.timestamp()
            <= now
            <= certificate.not_valid_after_utc.timestamp()
        ):
            raise InvalidClient("The client certificate is not valid at this time.")

    def _key(self, client: Client, certificate: x509.Certificate) -> None:
        """RFC 8705 §2.2: the certificate's public key is one the client registered."""
        credentials = client.credentials
        if credentials.jwks_uri is not None:
            raise InvalidClient(
                "self_signed_tls_client_auth needs the client's keys registered inline (a "
                "JWKS, not a jwks_uri).",
                detail="jwks_uri for self-signed",
            )
        if credentials.jwks is None:
            raise InvalidClient("The client has no keys.", detail="no jwks")
        keys = self._keys.get(client.client_id)
        if keys is None or keys.jwks is not credentials.jwks:
            keys = _Keys(credentials.jwks, _spki_of(credentials.jwks))
            self._keys[client.client_id] = keys
        if _spki(certificate.public_key()) not in keys.spki:
            raise InvalidClient("The client certificate's key is not one of the client's keys.")


def _name(credentials: Credentials, certificate: x509.Certificate) -> None:
    """RFC 8705 §2.1.2: the one registered name, on the certificate."""
    if credentials.tls_subject_dn is not None:
        try:
            expected = subjectdn.parse(credentials.tls_subject_dn)
        except subjectdn.BadDN as exc:
            raise InvalidClient(
                "The client's registered subject DN cannot be read.", detail=str(exc)
            ) from None
        if subjectdn.of_name(certificate.subject) != expected:
            raise InvalidClient("The client certificate's subject is not the registered one.")
        return
    if credentials.tls_san_dns is not None:
        wanted = credentials.tls_san_dns.lower()
        if not any(name.lower() == wanted for name in _sans(certificate, x509.DNSName)):
            raise InvalidClient("The client certificate does not carry the registered DNS name.")
        return
    if credentials.tls_san_uri is not None:
        if credentials.tls_san_uri not in _sans(certificate, x509.UniformResourceIdentifier):
            raise InvalidClient("The client certificate does not carry the registered URI.")
        return
    raise InvalidClient("The client registered no certificate name.", detail="no tls name")


def _sans(
    certificate: x509.Certificate, kind: type[x509.DNSName] | type[x509.UniformResourceIdentifier]
) -> list[str]:
    try:
        ext = certificate.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return []
    assert isinstance(ext.value, x509.SubjectAlternativeName)
    return list(ext.value.get_values_for_type(kind))


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def _spki_of(jwks: dict[str, Any]) -> frozenset[bytes]:
    try:
        return frozenset(_spki(key.key) for key in public_keys(jwks))
    except BadKeys:
        raise InvalidClient("The client's keys cannot be used.") from None
