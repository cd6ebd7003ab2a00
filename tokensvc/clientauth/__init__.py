"""Client authentication at `/token`, `/introspect` and `/revoke` (RFC 6749 §2.3, RFC 7523
§2.2, RFC 8705 §2, OIDC Core §9): who is calling, proven the one way the client registered.

A flat list of steps: read what the request presents (a Basic header, a secret in the body, an
assertion, or a bare `client_id` with or without a certificate) -> refuse a locked-out
client_id before looking at credentials -> load the client -> check its registered method with
that method's module (`secret`, `assertion`, `mtls`). Every failure is `InvalidClient` (or
`InvalidRequest` for a malformed request), and each failure of a registered client counts
towards its lockout (`tokensvc.limits.lockout`); unknown ids are not counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509

from tokensvc.clientauth.presented import Presented, presented
from tokensvc.clientauth.secret import check_secret
from tokensvc.errors import InvalidClient, SlowDown
from tokensvc.limits.lockout import Lockouts
from tokensvc.models import ASSERTION_METHODS, TLS_METHODS, AuthMethod, Client
from tokensvc.storage.protocols import ClientStore

__all__ = ["SUPPORTED_METHODS", "AssertionCheck", "CertificateCheck", "ClientAuth", "authenticate"]

# The methods /token authenticates (what discovery advertises).
SUPPORTED_METHODS: tuple[AuthMethod, ...] = (
    "client_secret_basic",
    "client_secret_post",
    "none",
    "private_key_jwt",
    "federated_jwt",
    "tls_client_auth",
    "self_signed_tls_client_auth",
)


class AssertionCheck(Protocol):
    """Verifies an RFC 7523 client assertion for the client it names (`assertion`)."""

    async def check(self, client: Client, assertion: str) -> None:
        """Return if `assertion` authenticates `client` by its registered method; raise
        `InvalidClient` otherwise (also when its keys cannot be had in time)."""


class CertificateCheck(Protocol):
    """Matches a client certificate against the client's registration (`mtls`)."""

    def check(self, client: Client, certificate: x509.Certificate) -> None:
        """Return if `certificate` authenticates `client`; raise `InvalidClient` otherwise."""


@dataclass(frozen=True, slots=True)
class ClientAuth:
    """What authentication needs, built once per listener."""

    clients: ClientStore
    lockouts: Lockouts | None = None
    assertions: AssertionCheck | None = None
    certificates: CertificateCheck | None = None
    clock: Callable[[], float] = time.time  # when a rotated-out secret stops working


async def authenticate(
    auth: ClientAuth,
    authorization: str | None,
    params: Mapping[str, str],
    certificate: x509.Certificate | None = None,
) -> Client:
    """The authenticated client, or `InvalidClient` / `InvalidRequest`, or `SlowDown` while
    its client_id is locked out. `certificate`: the client certificate of the request, from
    the TLS handshake or a trusted proxy's header (`tokensvc.http.clientcert`)."""
    offer = presented(authorization, params)
    if auth.lockouts is not None:
        locked = auth.lockouts.retry_after(offer.client_id)  # a dict lookup: no await, no I/O
        if locked:
            raise SlowDown(
                locked,
                "Too many failed authentications for this client; try again after "
                "Retry-After seconds.",
                limit="lockout",
                client_id=offer.client_id,
            )
    client = await auth.clients.get(offer.client_id)
    if client is None:
        raise InvalidClient(basic=offer.basic, detail="unknown client")
    try:
        await _check(auth, client, offer, certificate)
    except InvalidClient as exc:
        exc.client_id = client.client_id
        if auth.lockouts is not None:
            await auth.lockouts.record_failure(client.client_id)
        raise
    return client


async def _check(
    auth: ClientAuth, client: Client, offer: Presented, certificate: x509.Certificate | None
) -> None:
    method = client.auth_method
    if offer.method != _presentation_of(method):
        raise InvalidClient(
            f"The client is registered for {method}.",
            basic=offer.basic,
            detail=f"used {offer.method}",
        )
    if method in ASSERTION_METHODS:
        if auth.assertions is None or offer.assertion is None:
            raise InvalidClient(f"{method} is not available here.", detail="no verifier")
        await auth.assertions.check(client, offer.assertion)
    elif method in TLS_METHODS:
        if certificate is None:
            raise InvalidClient("A client certificate is required.", detail="no certificate")
        if auth.certificates is None:
            raise InvalidClient(f"{method} is not available here.", detail="no verifier")
        auth.certificates.check(client, certificate)
    elif method != "none":
        check_secret(client, offer.secret, offer.basic, auth.clock)


def _presentation_of(method: AuthMethod) -> str:
    """How a request made with `method` looks (`Presented.method`)."""
    if method in ASSERTION_METHODS:
        return "client_assertion"
    if method in TLS_METHODS or method == "none":
        return "none"
    return method
