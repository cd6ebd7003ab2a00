"""`client_secret_basic` and `client_secret_post` (RFC 6749 §2.3.1): the server-issued secret,
kept only as a keyed hash and compared in constant time (`tokensvc.opaque.verify_secret`).

During a rotation with an overlap (admin API, `previous_secret_ttl`) the replaced secret is
accepted too, until its expiry, so every instance of a client can move to the new secret
without one failed request; after it, only the new one works."""

from __future__ import annotations

from collections.abc import Callable

from tokensvc.errors import InvalidClient
from tokensvc.models import Client
from tokensvc.opaque import verify_secret


def check_secret(client: Client, secret: str, basic: bool, clock: Callable[[], float]) -> None:
    """`clock` is read only when a replaced secret may still be valid (not on the usual path)."""
    if client.secret_hash is not None and verify_secret(secret, client.secret_hash):
        return
    previous, until = client.previous_secret_hash, client.previous_secret_expires_at
    if (
        previous is not None
        and until is not None
        and clock() < until
        and verify_secret(secret, previous)
    ):
        return
    raise InvalidClient(basic=basic, detail="wrong secret")
