"""Access tokens (RFC 9068) and ID tokens (OIDC Core §2, §3.1.3.6)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tokensvc.claims import SCOPE_CLAIMS
from tokensvc.models import Grant
from tokensvc.opaque import Entropy, new_value
from tokensvc.signing.jws import Signer

if TYPE_CHECKING:
    from tokensvc.signing.keys import KeySet

# Claims a login front-end may release about a person: those some scope covers (OIDC Core
# §5.4); anything else in `claims` is dropped so that it cannot override the registered JWT
# claims.
USER_CLAIMS = frozenset().union(*SCOPE_CLAIMS.values())


class TokenMinter:
    """Builds and signs the JWTs one issuer hands out. Holds no state besides its keys; each
    token is signed by the key the schedule names at the token's `iat`."""

    __slots__ = ("_entropy", "access_ttl", "audience", "issuer", "keys")

    def __init__(
        self, issuer: str, keys: KeySet, access_ttl: int, entropy: Entropy, audience: str = ""
    ) -> None:
        self.issuer = issuer
        self.keys = keys  # replaced as a whole when the key file is reloaded
        self.access_ttl = access_ttl
        # RFC 9068 §3: without a resource indicator the default resource is the issuer itself.
        self.audience = audience or issuer
        self._entropy = entropy

    @property
    def signer(self) -> Signer:
        """The key signing now (wall clock)."""
        return self.keys.signer

    def access_token(
        self, *, sub: str, client_id: str, scope: str, now: int, grant: Grant | None = None
    ) -> str:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": self.audience,
            "exp": now + self.access_ttl,
            "iat": now,
            "jti": new_value(16, self._entropy),
            "client_id": client_id,
            "scope": scope,
        }
        if grant is not None:
            claims["gid"] = grant.grant_id  # ours: lets introspection see a revoked grant
            claims["auth_time"] = grant.auth_time
            if grant.acr is not None:
                claims["acr"] = grant.acr
            if grant.amr:
                claims["amr"] = list(grant.amr)
        return self.keys.signer_at(now).sign(claims, "at+jwt")

    def id_token(
        self, *, grant: Grant, access_token: str, now: int, nonce: str | None = None
    ) -> str:
        signer = self.keys.signer_at(now)
        claims: dict[str, Any] = {
            key: value for key, value in grant.claims.items() if key in USER_CLAIMS
        }
        claims.update(
            iss=self.issuer,
            sub=grant.sub,
            aud=grant.client_id,
            exp=now + self.access_ttl,
            iat=now,
            auth_time=grant.auth_time,
            azp=grant.client_id,
            at_hash=signer.half_hash(access_token),
        )
        if nonce is not None:
            claims["nonce"] = nonce
        if grant.acr is not None:
            claims["acr"] = grant.acr
        if grant.amr:
            claims["amr"] = list(grant.amr)
        if grant.sid is not None:
            claims["sid"] = grant.sid
        return signer.sign(claims, "JWT")
