"""DPoP proofs (RFC 9449 §4): checking one, its key's thumbprint, and stateless server nonces.

`check` does every test of RFC 9449 §4.3 that needs no store: one well-formed JWT, `typ:
dpop+jwt`, an asymmetric `alg` (ES256, RS256, PS256, EdDSA; never `none` or HMAC), a public
`jwk` header (private members refused) that verifies the signature, `htm` the request's
method, `htu` the endpoint's URL (compared without query and fragment, scheme and host case
and a default port aside; the expected URL is built from the issuer, never from a Host
header, so it is right behind an ingress), `iat` within `IAT_WINDOW` seconds either way, a
`jti`, and, where a token is presented with it, `ath` its hash (§4.2). Its `jti` is spent by
the caller, once per key within the window, on every replica (`tokensvc.storage.replay`).

Nonces (§8) need no shared state: each is a time window's number with an HMAC of it under a
key every replica derives from the same configuration, so any replica accepts another's. The
nonce of the current window and of the one before are valid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import orjson

from tokensvc import jwsverify
from tokensvc.publickeys import BadKeys, PublicKey, b64url_strict, public_key

ALGS = ("ES256", "RS256", "PS256", "EdDSA")  # the SPEC's DPoP algorithms
IAT_WINDOW = 60  # seconds a proof's iat may lie from now, either way (SPEC)
MAX_PROOF = 8 * 1024  # characters of a DPoP header we read
NONCE_WINDOW = 300  # seconds one nonce is current
_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}


class BadProof(ValueError):
    """Not a DPoP proof this request may use; the message is safe to send."""


@dataclass(frozen=True, slots=True)
class Proof:
    jkt: str  # RFC 7638 thumbprint of the proof's key: what tokens are bound to
    jti: str
    iat: int
    nonce: str | None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3: SHA-256 of the required members, in lexicographic order, no whitespace."""
    required = {name: jwk[name] for name in _MEMBERS[jwk["kty"]]}
    return _b64(hashlib.sha256(orjson.dumps(required, option=orjson.OPT_SORT_KEYS)).digest())


def token_hash(access_token: str) -> str:
    """RFC 9449 §4.2 `ath`: base64url SHA-256 of the access token's ASCII."""
    return _b64(hashlib.sha256(access_token.encode("ascii", "replace")).digest())


def normalized_url(url: str) -> str:
    """A URL as `htu` is compared (RFC 9449 §4.3 item 9, RFC 3986 §6.2.2-3): without query
    and fragment, scheme and host in lower case, a default port dropped."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = {"http": 80, "https": 443}.get(scheme)
    netloc = host if port is None or port == default else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path or '/'}"


@dataclass(frozen=True, slots=True)
class _Head:
    """What a proof's protected header gives: the same for every proof a client makes with
    one key, so it is worked out once per distinct header (`_head`)."""

    alg: str
    key: PublicKey
    jkt: str


@lru_cache(maxsize=1024)
def _head(segment: str) -> _Head:
    """The checked header of a proof (typ, alg, a public jwk that imports), by its base64url
    text; `BadProof` otherwise (refusals are not remembered)."""
    try:
        header = orjson.loads(b64url_strict(segment))
    except (ValueError, binascii.Error):
        raise BadProof("The DPoP proof is malformed.") from None
    if not isinstance(header, dict):
        raise BadProof("The DPoP proof is malformed.")
    alg = header.get("alg")
    if alg not in ALGS:
        raise BadProof(f"The DPoP proof must be signed with one of {', '.join(ALGS)}.")
    if "crit" in header:
        raise BadProof("The DPoP proof names critical extensions; none is supported.")
    if header.get("typ") != "dpop+jwt":
        raise BadProof("The DPoP proof's typ must be dpop+jwt.")
    jwk = header.get("jwk")
    try:
        key = public_key(jwk)
    except BadKeys as exc:
        raise BadProof(f"The DPoP proof's jwk is not a usable public key: {exc}") from None
    assert isinstance(jwk, dict)
    if alg not in key.algs:
        raise BadProof("The DPoP proof's alg does not fit its jwk.")
    return _Head(alg, key, thumbprint(jwk))


@lru_cache(maxsize=256)
def _htu(htu: str) -> str:
    return normalized_url(htu)


def check(
    value: str, *, method: str, url: str, now: float, access_token: str | None = None
) -> Proof:
    """The proof in a `DPoP` header `value` for a `method` request to `url` (already
    normalized); `BadProof` saying why not. Beyond the signature check, a proof costs two
    base64 passes and one small JSON parse: its header is checked once per distinct header."""
    if len(value) > MAX_PROOF or value.count(".") != 2:
        raise BadProof("The DPoP proof is malformed.")
    segment, body, sig = value.split(".")
    head = _head(segment)
    try:
        payload = b64url_strict(body)
        signature = b64url_strict(sig)
        claims = orjson.loads(payload)
    except (ValueError, binascii.Error):  # orjson.JSONDecodeError is a ValueError
        raise BadProof("The DPoP proof is malformed.") from None
    signing_input = f"{segment}.{body}".encode("ascii")
    if not jwsverify.verifies(head.alg, head.key.key, signing_input, signature):
        raise BadProof("The DPoP proof's signature does not verify with its jwk.")
    if not isinstance(claims, dict):
        raise BadProof("The DPoP proof's payload is not a JSON object.")
    if claims.get("htm") != method:
        raise BadProof(f"The DPoP proof's htm must be {method}.")
    htu = claims.get("htu")
    if not isinstance(htu, str) or _htu(htu) != url:
        raise BadProof("The DPoP proof's htu is not this endpoint's URL.")
    iat = claims.get("iat")
    if not isinstance(iat, int | float) or isinstance(iat, bool) or not math.isfinite(iat):
        raise BadProof("The DPoP proof needs an iat.")
    if abs(now - iat) > IAT_WINDOW:
        raise BadProof(f"The DPoP proof's iat is more than {IAT_WINDOW} s away from now.")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 256:
        raise BadProof("The DPoP proof needs a jti.")
    if access_token is not None and not (
        isinstance(claims.get("ath"), str)
        and hmac.compare_digest(claims["ath"], token_hash(access_token))
    ):
        raise BadProof("The DPoP proof's ath is not the hash of the access token.")
    nonce = claims.get("nonce")
    return Proof(head.jkt, jti, int(iat), nonce if isinstance(nonce, str) else None)


class Nonces:
    """Server nonces (RFC 9449 §8) that every replica sharing `secret` makes and accepts."""

    __slots__ = ("_key", "_window")

    def __init__(self, secret: bytes, window: int = NONCE_WINDOW) -> None:
        self._key = hmac.new(secret, b"tokensvc dpop nonce", hashlib.sha256).digest()
        self._window = window

    def _for(self, index: int) -> str:
        number = index.to_bytes(8, "big")
        return _b64(number + hmac.new(self._key, number, hashlib.sha256).digest()[:16])

    def current(self, now: float) -> str:
        return self._for(int(now // self._window))

    def valid(self, nonce: str | None, now: float) -> bool:
        """Whether `nonce` is this window's or the last one's."""
        if nonce is None:
            return False
        index = int(now // self._window)
        return any(
            hmac.compare_digest(nonce.encode("ascii", "replace"), self._for(i).encode())
            for i in (index, index - 1)
        )
