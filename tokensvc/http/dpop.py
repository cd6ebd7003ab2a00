"""DPoP at the token service's public endpoints (RFC 9449): the proof of a request, its
`jti` spent once per key on every replica, and the server nonce when
`TOKENSVC_DPOP_NONCE=1`.

The URLs proofs must name (`htu`) are built from `TOKENSVC_ISSUER` once, never from the
request's Host header or scheme, so a proof made for the public URL is right behind an
ingress that terminates TLS and rewrites the host (RFC 9449 §4.3 item 9).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from aiohttp import web

from tokensvc import dpopproof
from tokensvc.config import Settings
from tokensvc.dpopproof import IAT_WINDOW, BadProof, Nonces, Proof, normalized_url
from tokensvc.errors import InvalidDpopProof, UseDpopNonce
from tokensvc.opaque import lookup_hash
from tokensvc.service import TokenService

HEADER = "DPoP"


@dataclass(frozen=True, slots=True)
class Dpop:
    """One listener's DPoP settings: the URLs proofs name, and the nonces (None: off)."""

    token_url: str
    userinfo_url: str
    nonces: Nonces | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Dpop:
        """Nonces are keyed from `TOKENSVC_INTERNAL_TOKEN`, which every replica of a
        deployment shares (required outside `dev`; `dev` is one process: a random key)."""
        nonces = None
        if settings.dpop_nonce:
            secret = settings.internal_token or secrets.token_urlsafe(32)
            nonces = Nonces(secret.encode())
        return cls(
            normalized_url(settings.issuer + "/token"),
            normalized_url(settings.issuer + "/userinfo"),
            nonces,
        )

    def next_nonce(self, now: float) -> str | None:
        return None if self.nonces is None else self.nonces.current(now)


async def proof_of(
    request: web.Request,
    svc: TokenService,
    dpop: Dpop,
    url: str,
    access_token: str | None = None,
    *,
    nonce: bool = True,
) -> Proof | None:
    """The request's DPoP proof for `url` (None when it sent none), checked, its nonce
    checked when nonces are on and `nonce` (TOKENSVC_DPOP_NONCE is /token's), and its `jti`
    spent; `invalid_dpop_proof` or `use_dpop_nonce` otherwise."""
    values = request.headers.getall(HEADER, ())
    if not values:
        return None
    if len(values) > 1:
        raise InvalidDpopProof("Send one DPoP header (RFC 9449 §4.3).")
    now = svc.clock()
    try:
        proof = dpopproof.check(
            values[0], method=request.method, url=url, now=now, access_token=access_token
        )
    except BadProof as exc:
        raise InvalidDpopProof(str(exc)) from None
    if nonce and dpop.nonces is not None and not dpop.nonces.valid(proof.nonce, now):
        raise UseDpopNonce(dpop.nonces.current(now))
    # RFC 9449 §11.1: once per key within the window in which the proof is acceptable.
    key = lookup_hash(f"dpop\0{proof.jkt}\0{proof.jti}")
    if not await svc.stores.replay.first_use(key, proof.iat + IAT_WINDOW + 1):
        raise InvalidDpopProof("The DPoP proof was used before.", detail="dpop replay")
    return proof
