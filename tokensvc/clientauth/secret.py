"""`client_secret_basic` and `client_secret_post` (RFC 6749 §2.3.1): the server-issued secret,
kept only as a keyed hash and compared in constant time (`tokensvc.opaque.verify_secret`)."""

from __future__ import annotations

from tokensvc.errors import InvalidClient
from tokensvc.models import Client
from tokensvc.opaque import verify_secret


def check_secret(client: Client, secret: str, basic: bool) -> None:
    if client.secret_hash is None or not verify_secret(secret, client.secret_hash):
        raise InvalidClient(basic=basic, detail="wrong secret")
