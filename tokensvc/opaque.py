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
import os
import threading
from collections.abc import Callable
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

Entropy = Callable[[int], bytes]


class RandomPool:
    """The kernel's CSPRNG (`os.urandom`, as `secrets.token_bytes`), read `size` bytes at a
    time: one getrandom(2) per couple of hundred values instead of one per value, on a path
    that draws several per request (a jti per token, a refresh token, a seal nonce). Bytes
    are handed out once each; a forked child starts with an empty pool, so no two processes
    ever share one byte of it."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._buffer = b""
        self._offset = 0
        self._lock = threading.Lock()  # uncontended on the event loop; threads are safe too
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._buffer, self._offset = b"", 0
        self._lock = threading.Lock()

    def __call__(self, nbytes: int) -> bytes:
        if nbytes > self._size // 4:
            return os.urandom(nbytes)
        with self._lock:
            start, end = self._offset, self._offset + nbytes
            if end > len(self._buffer):
                self._buffer, start, end = os.urandom(self._size), 0, nbytes
            self._offset = end
            return self._buffer[start:end]


# The token service's randomness (`TokenService.entropy`; tests pass their own `Entropy`).
random_bytes: Entropy = RandomPool()

CODE_BYTES = 32  # 256 bits; SPEC asks >= 128
REFRESH_BYTES = 32  # 256 bits; SPEC asks >= 256
SECRET_BYTES = 32
_SECRET_SCHEME = "hmac-sha256"
_SEAL_INFO = b"tokensvc/refresh-successor/v1"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_value(nbytes: int, entropy: Entropy = random_bytes) -> str:
    """A URL-safe random credential of `nbytes` of entropy."""
    return b64url(entropy(nbytes))


def lookup_hash(value: str) -> bytes:
    """The key under which a store keeps a code or refresh token (SHA-256 of the value)."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def hash_secret(secret: str, entropy: Entropy = random_bytes) -> str:
    salt = entropy(16)
    digest = hmac.new(salt, secret.encode(), hashlib.sha256).digest()
    return f"{_SECRET_SCHEME}${b64url(salt)}${b64url(digest)}"


def verify_secret(secret: str, stored: str) -> bool:
    """Constant-time check of a presented client secret against its stored hash."""
    parsed = _parsed_hash(stored)
    if parsed is None:
        return False
    salt, expected = parsed
    actual = hmac.digest(salt, secret.encode("utf-8", "surrogatepass"), "sha256")
    return hmac.compare_digest(expected, actual)


@lru_cache(maxsize=4096)
def _parsed_hash(stored: str) -> tuple[bytes, bytes] | None:
    """(salt, digest) of a stored secret hash, None if it is not ours: decoded once per
    client, not once per request (a hash is what a store holds, no secret)."""
    try:
        scheme, salt, digest = stored.split("$")
        if scheme != _SECRET_SCHEME:
            return None
        return b64url_decode(salt), b64url_decode(digest)
    except ValueError:
        return None


def _seal_key(token: str) -> bytes:
    return hmac.digest(token.encode("utf-8", "surrogatepass"), _SEAL_INFO, "sha256")


def seal(token: str, associated: bytes, plaintext: bytes, entropy: Entropy = random_bytes) -> bytes:
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
