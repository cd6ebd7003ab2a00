"""Frozen records passed between protocol logic and storage.

No record holds a raw code, token or secret: fields holding one of those end in `_hash`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from tokensvc.binding import NO_BINDING, Binding

AuthMethod = Literal[
    "client_secret_basic",
    "client_secret_post",
    "none",
    "private_key_jwt",
    "federated_jwt",
    "tls_client_auth",
    "self_signed_tls_client_auth",
]
AUTH_METHODS: tuple[AuthMethod, ...] = get_args(AuthMethod)
# Methods whose client holds a secret the server issued (and keeps only as a keyed hash).
SECRET_METHODS: frozenset[AuthMethod] = frozenset({"client_secret_basic", "client_secret_post"})
# RFC 7523 §2.2 assertions in the body: `client_assertion_type` and `client_assertion`.
ASSERTION_METHODS: frozenset[AuthMethod] = frozenset({"private_key_jwt", "federated_jwt"})
TLS_METHODS: frozenset[AuthMethod] = frozenset({"tls_client_auth", "self_signed_tls_client_auth"})
GRANT_TYPES = (
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "password",
    "urn:ietf:params:oauth:grant-type:token-exchange",  # RFC 8693
)


@dataclass(frozen=True, slots=True)
class Credentials:
    """How a client authenticates without a secret (RFC 7591 §2 names in the admin API,
    `client add` flags on the command line); each method uses its own fields."""

    # private_key_jwt and self_signed_tls_client_auth: the client's public keys, inline (RFC
    # 7591 `jwks`) or where to fetch them (`jwks_uri`); at most one of the two.
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    # federated_jwt: the federation issuer whose workload tokens authenticate this client, and
    # the `sub` they must carry (exact, or a pattern where `*` matches within one segment).
    federated_issuer: str | None = None
    federated_subject: str | None = None
    # tls_client_auth (RFC 8705 §2.1.2): exactly one names the certificate the client shows.
    tls_subject_dn: str | None = None
    tls_san_dns: str | None = None
    tls_san_uri: str | None = None


NO_CREDENTIALS = Credentials()


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    name: str
    auth_method: AuthMethod
    grant_types: frozenset[str]
    redirect_uris: tuple[str, ...] = ()
    scopes: frozenset[str] = frozenset()
    secret_hash: str | None = None
    created_at: float = 0.0
    require_consent: bool = False
    # Token bucket at /token (tokensvc.limits.buckets): `rate_limit` requests per second,
    # `rate_burst` at once. Both None (no limit) or both set.
    rate_limit: float | None = None
    rate_burst: int | None = None
    # What the client authenticates with when it holds no secret (keys, workload tokens,
    # certificates); empty for secret-based and public clients.
    credentials: Credentials = NO_CREDENTIALS
    # Identifiers of the registered resources (RFC 8707) it may get access tokens for.
    resources: tuple[str, ...] = ()
    # RFC 9449 §5.2 `dpop_bound_access_tokens`: every token request must carry a DPoP proof.
    dpop_bound: bool = False
    # RFC 9126 §6 `require_pushed_authorization_requests`: /authorize only through /par.
    require_par: bool = False
    # `client add --reuse-access-token` (opt-in, ory/hydra#2046): a client_credentials request
    # may get the bearer token last issued for the same scope and audience while at least half
    # its lifetime is left (tokensvc.machinetokens).
    reuse_access_token: bool = False
    # Secret rotation with an overlap (admin API): the replaced secret's hash, accepted until
    # `previous_secret_expires_at` (epoch seconds). Both None, or both set.
    previous_secret_hash: str | None = None
    previous_secret_expires_at: float | None = None
    # OIDC RP-Initiated Logout 1.0 §3.1 and Back-Channel Logout 1.0 §2.2.
    post_logout_redirect_uris: tuple[str, ...] = ()
    backchannel_logout_uri: str | None = None

    @property
    def public(self) -> bool:
        """Public clients (RFC 6749 §2.1) cannot keep a secret, so PKCE is mandatory for them."""
        return self.auth_method == "none"


@dataclass(frozen=True, slots=True)
class Federation:
    """A trusted issuer of workload tokens (a Kubernetes service-account issuer, a SPIRE OIDC
    discovery provider, a CI system): its public keys, inline or at a `jwks_uri`."""

    issuer: str
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Resource:
    """A resource server (an API, RFC 8707) access tokens can be issued for: its identifier
    (the tokens' `aud`: an absolute URI without a fragment), the scopes that belong to it, and
    an optional cap on its access tokens' lifetime."""

    identifier: str
    scopes: frozenset[str]
    name: str | None = None
    access_token_ttl: int | None = None
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class User:
    sub: str
    username: str
    password_hash: str
    email: str | None = None
    name: str | None = None
    email_verified: bool = False


@dataclass(frozen=True, slots=True)
class Grant:
    """What a person authorised a client to do; every refresh token of one family shares it."""

    grant_id: str
    client_id: str
    sub: str
    scope: str
    auth_time: int
    acr: str | None = None
    amr: tuple[str, ...] | None = None
    sid: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    # What every refresh token of the grant is bound to (RFC 8705 §4, public clients only):
    # a refresh must prove it again. `NO_BINDING` for confidential clients and unbound grants.
    binding: Binding = NO_BINDING
    # The resources (RFC 8707) the person granted at /authorize: a code exchange or refresh
    # may narrow them per request, never widen them. Empty: tokens for the issuer only.
    resources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GrantSummary:
    """A person's live grant as the admin API lists it: which client, what, since when."""

    grant_id: str
    client_id: str
    scope: str
    created_at: float
    resources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionGrant:
    """A grant made in a browser session that ended (OIDC Back-Channel Logout 1.0 §2.7): its
    client is told; `ended` says whether the grant went with the session (it had no
    `offline_access`) or outlives it."""

    grant_id: str
    client_id: str
    ended: bool


@dataclass(frozen=True, slots=True)
class LogoutDelivery:
    """A logout token owed to `client_id` for the ended session `sid` of `sub` (OIDC
    Back-Channel Logout 1.0 §2.5); `delivery_id` is the token's `jti`."""

    delivery_id: str
    client_id: str
    sub: str
    sid: str
    created_at: float
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class CodeRecord:
    """An authorization code's binding (RFC 6749 §4.1.2, RFC 7636 §4.4, OIDC Core §3.1.2.5)."""

    grant: Grant
    redirect_uri: str
    expires_at: float
    nonce: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    # RFC 9449 §10: the thumbprint of the DPoP key the code's exchange must prove.
    dpop_jkt: str | None = None


@dataclass(frozen=True, slots=True)
class CodeReplayed:
    """Consume found a code that was already used; its grant must be revoked (RFC 6749 §4.1.2)."""

    grant_id: str


@dataclass(frozen=True, slots=True)
class RefreshState:
    """One stored refresh token as rotation sees it."""

    token_hash: bytes
    grant: Grant
    expires_at: float
    retired_at: float | None
    successor_box: bytes | None
    revoked: bool


@dataclass(frozen=True, slots=True)
class Successor:
    """A rotation's new token and the sealed copy of its response for grace-window repeats."""

    token_hash: bytes
    expires_at: float
    sealed_response: bytes
