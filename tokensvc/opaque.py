"""Opaque credentials: generation, the hashes stores keep, and constant-time checks.

Codes and refresh tokens carry >=128/256 bits of entropy, so a plain SHA-256 is a safe lookup
key (nothing to brute-force) and lets a store find a row without ever holding the value.
Client secrets are server-generated with 256 bits and hashed with a salted keyed hash
(HMAC-SHA256): as safe as argon2 for such secrets, and cheap enough for the
`client_credentials` fast path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

Entropy = Callable[[int], bytes]

CODE_BYTES = 32  # 256 bits; SPEC asks >= 128
REFRESH_BYTES = 32  # 256 bits; SPEC asks >= 256
SECRET_BYTES = 32
_SECRET_SCHEME = "hmac-sha256"
_SEAL_INFO = b"tokensvc/refresh-successor/v1"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_value(nbytes: int, entropy: Entropy = secrets.token_bytes) -> str:
    """A URL-safe random credential of `nbytes` of entropy."""
    return b64url(entropy(nbytes))


def lookup_hash(value: str) -> bytes:
    """The key under which a store keeps a code or refresh token (SHA-256 of the value)."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def hash_secret(secret: str, entropy: Entropy = secrets.token_bytes) -> str:
    salt = entropy(16)
    digest = hmac.new(salt, secret.encode(), hashlib.sha256).digest()
    return f"{_SECRET_SCHEME}${b64url(salt)}${b64url(digest)}"


def verify_secret(secret: str, stored: str) -> bool:
    """Constant-time check of a presented client secret against its stored hash."""
    try:
        scheme, salt, digest = stored.split("$")
        if scheme != _SECRET_SCHEME:
            return False
        expected = b64url_decode(digest)
        actual = hmac.new(
            b64url_decode(salt), secret.encode("utf-8", "surrogatepass"), hashlib.sha256
        ).digest()
    except ValueError:
        return False
    return hmac.compare_digest(expected, actual)


def _seal_key(token: str) -> bytes:
    return hmac.new(token.encode("utf-8", "surrogatepass"), _SEAL_INFO, hashlib.sha256).digest()


def seal(
    token: str, associated: bytes, plaintext: bytes, entropy: Entropy = secrets.token_bytes
) -> bytes:
    """Encrypt a successor response so only a holder of `token` can read it back.

    The key derives from the presented refresh token, which the store never holds, so a copy
    of the database alone cannot reveal the successor tokens (SPEC: concurrent refresh).
    """
    nonce = entropy(12)
    return nonce + AESGCM(_seal_key(token)).encrypt(nonce, plaintext, associated)


def unseal(token: str, associated: bytes, box: bytes) -> bytes | None:
    try:
        return AESGCM(_seal_key(token)).decrypt(box[:12], box[12:], associated)
    except (InvalidTag, ValueError):
        return None
