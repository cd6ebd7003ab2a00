"""PKCE (RFC 7636) with S256 only: RFC 9700 §2.1.1 forbids `plain` where S256 is possible."""

from __future__ import annotations

import hashlib
import hmac
import re

from tokensvc.opaque import b64url

METHOD = "S256"
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")


def valid_verifier(verifier: str) -> bool:
    """RFC 7636 §4.1: 43..128 unreserved characters."""
    return _VERIFIER.fullmatch(verifier) is not None


def valid_challenge(challenge: str) -> bool:
    """An S256 challenge is the unpadded base64url of a SHA-256 digest: 43 characters."""
    return _CHALLENGE.fullmatch(challenge) is not None


def challenge_for(verifier: str) -> str:
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def verify(verifier: str, challenge: str) -> bool:
    """RFC 7636 §4.6, compared in constant time."""
    if not valid_verifier(verifier):
        return False
    return hmac.compare_digest(challenge_for(verifier), challenge)
