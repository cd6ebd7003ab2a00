"""Access tokens (RFC 9068), ID tokens (OIDC Core §2, §3.1.3.6), transaction tokens and
logout tokens (OIDC Back-Channel Logout 1.0 §2.4)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tokensvc.binding import NO_BINDING, Binding
from tokensvc.claims import claims_for_scope
from tokensvc.models import Grant
from tokensvc.opaque import Entropy, new_value
from tokensvc.signing.jws import Signer

if TYPE_CHECKING:
    from tokensvc.signing.keys import KeySet

BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TTL = 120  # seconds: one delivery attempt's token, signed again for a retry


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
        self,
        *,
        sub: str,
        client_id: str,
        scope: str,
        now: int,
        grant: Grant | None = None,
        binding: Binding = NO_BINDING,
        audience: str | list[str] | None = None,
        ttl: int | None = None,
        act: dict[str, Any] | None = None,
    ) -> str:
        """`binding`: what the token request proved; anything but `NO_BINDING` becomes the
        token's `cnf` (RFC 8705 §3.1, RFC 9068 §2.2.1). `audience`: the resources the token is
        for (RFC 8707; default the issuer), `ttl` its lifetime (default the service's), `act`
        who acts for `sub` (RFC 8693 §4.1, token exchange)."""
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": self.audience if audience is None else audience,
            "exp": now + (self.access_ttl if ttl is None else ttl),
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
        if binding is not NO_BINDING:
            claims["cnf"] = binding.cnf()
        if act is not None:
            claims["act"] = act
        return self.keys.signer_at(now).sign(claims, "at+jwt")

    def txn_token(
        self,
        *,
        sub: str,
        audience: str,
        scope: str,
        requester: str,
        now: int,
        ttl: int,
        request_context: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
    ) -> str:
        """A transaction token (draft-ietf-oauth-transaction-tokens-10 §4): `txn` a fresh
        transaction id, `req_wl` the requesting workload, `rctx` / `tctx` the request and
        transaction context it was given; `typ: txntoken+jwt`."""
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "iat": now,
            "exp": now + ttl,
            "aud": audience,
            "txn": new_value(16, self._entropy),
            "sub": sub,
            "scope": scope,
            "req_wl": requester,
        }
        if request_context:
            claims["rctx"] = request_context
        if details:
            claims["tctx"] = details
        return self.keys.signer_at(now).sign(claims, "txntoken+jwt")

    def logout_token(self, *, client_id: str, sub: str, sid: str, jti: str, now: int) -> str:
        """A logout token for `client_id` (OIDC Back-Channel Logout 1.0 §2.4): `typ:
        logout+jwt` (§2.4 recommends it, so that it cannot pass for an ID token), the
        back-channel logout event, `sub` and `sid` both, a `jti` the receiver can use to refuse
        a replay (the same for every retry of one delivery), never a `nonce` (§2.4: its
        absence is what tells it apart). Valid for LOGOUT_TOKEN_TTL seconds (§2.6: short)."""
        claims = {
            "iss": self.issuer,
            "aud": client_id,
            "iat": now,
            "exp": now + LOGOUT_TOKEN_TTL,
            "jti": jti,
            "sub": sub,
            "sid": sid,
            "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
        }
        return self.keys.signer_at(now).sign(claims, "logout+jwt")

    def id_token(
        self,
        *,
        grant: Grant,
        access_token: str,
        now: int,
        nonce: str | None = None,
        scope: str | None = None,
    ) -> str:
        """The ID token issued with `access_token`. `scope` is that token's scope (after any
        narrowing at refresh; default: the grant's): the person's claims are released by the
        same rule as at /userinfo (`claims.claims_for_scope`, OIDC Core §5.4), and the
        registered claims below are set after them, so a released claim cannot replace one."""
        signer = self.keys.signer_at(now)
        claims = claims_for_scope(grant.claims, grant.scope if scope is None else scope)
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
