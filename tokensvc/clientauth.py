"""Client authentication at the token endpoint (RFC 6749 §2.3, OIDC Core §9).

A client uses exactly the one method it registered: `client_secret_basic`,
`client_secret_post`, or `none` (public client: `client_id` only, PKCE enforced by the grant).

With `lockouts`, a client_id locked out after repeated failures (`tokensvc.limits.lockout`) is
refused with `SlowDown` before its credentials are looked at, and every failure of a registered
client_id is counted. Unknown ids are not counted.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from urllib.parse import unquote

from tokensvc.errors import InvalidClient, InvalidRequest, SlowDown
from tokensvc.limits.lockout import Lockouts
from tokensvc.models import AuthMethod, Client
from tokensvc.opaque import verify_secret
from tokensvc.storage.protocols import ClientStore

# The methods this module can authenticate (what discovery advertises).
SUPPORTED_METHODS: tuple[AuthMethod, ...] = ("client_secret_basic", "client_secret_post", "none")


def _basic(header: str) -> tuple[str, str]:
    """RFC 6749 §2.3.1: id and secret are form-urlencoded, then joined by ':' and base64'd."""
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidClient("Malformed Basic authorization header.", basic=True) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep or not client_id:
        raise InvalidClient("Malformed Basic authorization header.", basic=True)
    client_id = unquote(client_id, errors="strict")
    if "\x00" in client_id:  # no client_id holds NUL (RFC 6749 A.1), nor can a Postgres text
        raise InvalidClient("Malformed Basic authorization header.", basic=True)
    return client_id, unquote(secret, errors="strict")


async def authenticate(
    clients: ClientStore,
    authorization: str | None,
    params: Mapping[str, str],
    *,
    lockouts: Lockouts | None = None,
) -> Client:
    """Return the authenticated client or raise `InvalidClient` / `InvalidRequest`, or
    `SlowDown` while the client_id is locked out."""
    body_id = params.get("client_id")
    body_secret = params.get("client_secret")
    basic = authorization is not None and authorization[:6].lower() == "basic "
    method: AuthMethod
    if basic:
        assert authorization is not None
        try:
            client_id, secret = _basic(authorization)
        except UnicodeDecodeError:
            raise InvalidClient("Malformed Basic authorization header.", basic=True) from None
        if body_secret is not None:
            raise InvalidRequest("Use only one client authentication method.")
        if body_id is not None and body_id != client_id:
            raise InvalidRequest("client_id in the body differs from the authenticated client.")
        method = "client_secret_basic"
    elif authorization is not None:
        raise InvalidClient("Unsupported authorization scheme; use Basic.", basic=True)
    elif body_id is None:
        raise InvalidClient("Client authentication is required.")
    elif body_secret is not None:
        client_id, secret, method = body_id, body_secret, "client_secret_post"
    else:
        client_id, secret, method = body_id, "", "none"

    if lockouts is not None:
        locked = lockouts.retry_after(client_id)  # a dict lookup: no await, no I/O
        if locked:
            raise SlowDown(
                locked,
                "Too many failed authentications for this client; try again after "
                "Retry-After seconds.",
                limit="lockout",
                client_id=client_id,
            )
    client = await clients.get(client_id)
    if client is None:
        raise InvalidClient(basic=basic, detail="unknown client")
    try:
        _verify(client, method, secret, basic)
    except InvalidClient as exc:
        exc.client_id = client_id
        if lockouts is not None:
            await lockouts.record_failure(client_id)
        raise
    return client


def _verify(client: Client, method: AuthMethod, secret: str, basic: bool) -> None:
    if client.auth_method != method:
        raise InvalidClient(
            f"The client is registered for {client.auth_method}.",
            basic=basic,
            detail=f"used {method}",
        )
    if method != "none" and (
        client.secret_hash is None or not verify_secret(secret, client.secret_hash)
    ):
        raise InvalidClient(basic=basic, detail="wrong secret")
