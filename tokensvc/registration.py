"""Registering clients, users, federations and resources: validation and credential
generation shared by the CLI and `tokensvc dev`. Secrets are returned once to the caller and
only their hashes are kept."""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from argon2 import PasswordHasher

from tokensvc import scope as scopes
from tokensvc import subjectdn
from tokensvc.errors import InvalidScope
from tokensvc.models import (
    AUTH_METHODS,
    GRANT_TYPES,
    NO_CREDENTIALS,
    SECRET_METHODS,
    AuthMethod,
    Client,
    Credentials,
    Federation,
    Resource,
    User,
)
from tokensvc.opaque import SECRET_BYTES, Entropy, hash_secret, new_value
from tokensvc.publickeys import BadKeys, check_public_jwks
from tokensvc.scope import PERSON_SCOPES

# Bounds of a client's rate limit: beyond 100 000 requests per second a limit means nothing
# (and the Redis bucket counts in microseconds).
MAX_RATE = 100_000
MAX_BURST = 1_000_000
DEFAULT_USER_SCOPES = ("openid", "profile", "email", "offline_access")
# A resource identifier goes into every token for it (`aud`) and every request naming it.
MAX_RESOURCE_IDENTIFIER = 2048
# Seconds: a resource may shorten its access tokens' lifetime, never make them day-long-plus.
MAX_RESOURCE_TOKEN_TTL = 86_400
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# RFC 3986 §2: what a URI may hold (unreserved, reserved, percent-encodings); `#` is checked
# apart. RFC 8141 §2: a URN's namespace identifier.
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
_URN = re.compile(r"urn:[A-Za-z0-9][A-Za-z0-9-]{0,30}[A-Za-z0-9]:.+", re.IGNORECASE)
password_hasher = PasswordHasher()  # argon2id with argon2-cffi's RFC 9106 low-memory profile


class RegistrationError(ValueError):
    """Input that cannot be registered; the message is one line for the operator."""


class BadRedirectUri(RegistrationError):
    """A redirect URI that cannot be registered (RFC 7591 §3.2.2 `invalid_redirect_uri`)."""


def check_redirect_uri(uri: str) -> str:
    """RFC 6749 §3.1.2 absolute, no fragment; RFC 9700 §2.6: https, or http on loopback only;
    RFC 8252 §7.1: private-use schemes (reverse domain names) for native apps."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise BadRedirectUri(f"malformed redirect URI {uri!r}: {exc}") from None
    if not parts.scheme or parts.fragment or "#" in uri:
        raise BadRedirectUri(f"redirect URI must be absolute without a fragment: {uri!r}")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise BadRedirectUri(f"http redirect URIs are allowed only on loopback: {uri!r}")
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise BadRedirectUri(f"redirect URI needs a host: {uri!r}")
    if parts.scheme not in ("http", "https") and "." not in parts.scheme:
        raise BadRedirectUri(f"custom schemes must be reverse domain names: {uri!r}")
    return uri


# Which `Credentials` fields each method needs (one of each group) and allows.
_KEYS = ("jwks", "jwks_uri")
_TLS_NAMES = ("tls_subject_dn", "tls_san_dns", "tls_san_uri")
_NEEDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "private_key_jwt": (_KEYS,),
    "self_signed_tls_client_auth": (_KEYS,),
    "federated_jwt": (("federated_issuer",), ("federated_subject",)),
    "tls_client_auth": (_TLS_NAMES,),
}
_FLAG = {
    "jwks": "--jwks-file",
    "jwks_uri": "--jwks-uri",
    "federated_issuer": "--federated-issuer",
    "federated_subject": "--federated-subject",
    "tls_subject_dn": "--tls-subject-dn",
    "tls_san_dns": "--tls-san-dns",
    "tls_san_uri": "--tls-san-uri",
}
CLIENT_SECRET_JWT = (
    "client_secret_jwt is not offered: client secrets are stored only as keyed hashes, so the "
    "server could not check an HMAC made with one; use private_key_jwt"
)


def check_credentials(method: str, credentials: Credentials) -> Credentials:
    """The fields `method` needs, exactly one of each group, and no other; keys are public
    JWK Sets, URLs https (or http on loopback), names non-empty."""
    given = {f for f in _FLAG if getattr(credentials, f) is not None}
    groups = _NEEDS.get(method, ())
    allowed = {f for group in groups for f in group}
    if given - allowed:
        extra = _FLAG[sorted(given - allowed)[0]]
        raise RegistrationError(f"{extra} does not apply to --auth-method {method}")
    for group in groups:
        chosen = given & set(group)
        if len(chosen) != 1:
            names = " or ".join(_FLAG[f] for f in group)
            raise RegistrationError(f"--auth-method {method} needs exactly one of {names}")
    if credentials.jwks is not None:
        try:
            check_public_jwks(credentials.jwks)
        except BadKeys as exc:
            raise RegistrationError(f"--jwks-file: {exc}") from None
    for field_name in ("jwks_uri", "federated_issuer"):
        value = getattr(credentials, field_name)
        if value is not None:
            check_fetch_url(value, _FLAG[field_name])
    for field_name in ("federated_subject", *_TLS_NAMES):
        value = getattr(credentials, field_name)
        if value is not None and (not value.strip() or _CONTROL.search(value)):
            raise RegistrationError(f"{_FLAG[field_name]} must be a non-empty name")
    if credentials.tls_san_uri is not None and not urlsplit(credentials.tls_san_uri).scheme:
        raise RegistrationError("--tls-san-uri must be an absolute URI (e.g. spiffe://...)")
    if credentials.tls_subject_dn is not None:
        try:  # the rule /token matches by (tokensvc.subjectdn)
            subjectdn.parse(credentials.tls_subject_dn)
        except subjectdn.BadDN as exc:
            raise RegistrationError(
                f"--tls-subject-dn must be an RFC 4514 DN such as CN=api,O=Example: {exc}"
            ) from None
    return credentials


def check_fetch_url(url: str, what: str) -> str:
    """An issuer or key URL the service relies on: https, or http on loopback (tests, a local
    discovery provider); no fragment, no credentials in it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise RegistrationError(f"{what}: malformed URL {url!r}") from None
    loopback = parts.scheme == "http" and parts.hostname in _LOOPBACK
    if (parts.scheme != "https" and not loopback) or not parts.hostname:
        raise RegistrationError(f"{what} must be an https URL (http only on loopback): {url!r}")
    if parts.fragment or parts.username or parts.password:
        raise RegistrationError(f"{what} must have no fragment and no credentials: {url!r}")
    return url


def new_federation(
    *,
    issuer: str,
    jwks: dict[str, Any] | None = None,
    jwks_uri: str | None = None,
    clock: Callable[[], float] = time.time,
) -> Federation:
    """A trusted issuer of workload tokens, with its keys inline or at a `jwks_uri`."""
    check_fetch_url(issuer, "--issuer")
    if (jwks is None) == (jwks_uri is None):
        raise RegistrationError("a federation needs exactly one of --jwks-file or --jwks-uri")
    if jwks is not None:
        try:
            check_public_jwks(jwks)
        except BadKeys as exc:
            raise RegistrationError(f"--jwks-file: {exc}") from None
    if jwks_uri is not None:
        check_fetch_url(jwks_uri, "--jwks-uri")
    return Federation(issuer=issuer, jwks=jwks, jwks_uri=jwks_uri, created_at=clock())


def new_client(
    *,
    name: str,
    grant_types: Iterable[str],
    redirect_uris: Iterable[str] = (),
    scope_list: Iterable[str] = (),
    public: bool = False,
    auth_method: str | None = None,
    require_consent: bool = False,
    rate_limit: float | None = None,
    rate_burst: int | None = None,
    credentials: Credentials = NO_CREDENTIALS,
    resources: Iterable[str] = (),
    dpop_bound: bool = False,
    require_par: bool = False,
    reuse_access_token: bool = False,
    post_logout_redirect_uris: Iterable[str] = (),
    backchannel_logout_uri: str | None = None,
    entropy: Entropy = secrets.token_bytes,
    clock: Callable[[], float] = time.time,
) -> tuple[Client, str | None]:
    """Validate a registration and return the client with its one-time plaintext secret.
    `resources` are identifiers (RFC 8707) the client may get tokens for; that each is
    registered is the caller's check, against the store it writes to."""
    if not name.strip():
        raise RegistrationError("--name must not be empty")
    grants = frozenset(grant_types)
    if not grants:
        raise RegistrationError("at least one --grant-type is required")
    unknown = grants.difference(GRANT_TYPES)
    if unknown:
        raise RegistrationError(
            f"unknown grant type {sorted(unknown)[0]!r}; choose from {', '.join(GRANT_TYPES)}"
        )
    method = auth_method or ("none" if public else "client_secret_basic")
    if method == "client_secret_jwt":
        raise RegistrationError(CLIENT_SECRET_JWT)
    if method not in AUTH_METHODS:
        raise RegistrationError(f"--auth-method must be one of {', '.join(AUTH_METHODS)}")
    if public and method != "none":
        raise RegistrationError("a --public client authenticates with 'none'")
    if method == "none" and "client_credentials" in grants:
        raise RegistrationError("client_credentials needs a confidential client")
    uris = tuple(dict.fromkeys(check_redirect_uri(u) for u in redirect_uris))
    if "authorization_code" in grants and not uris:
        raise BadRedirectUri("authorization_code needs at least one --redirect-uri")
    requested = list(_scope_tokens(scope_list))
    if not requested and grants & {"authorization_code", "password"}:
        requested = list(DEFAULT_USER_SCOPES)
    rate_limit, rate_burst = check_rate_limit(rate_limit, rate_burst)
    credentials = check_credentials(method, credentials)
    allowed = tuple(dict.fromkeys(check_resource_identifier(r, "--resource") for r in resources))
    # OIDC RP-Initiated Logout 1.0 §3.1: registered like redirect URIs; Back-Channel Logout
    # 1.0 §2.2: an absolute URI without a fragment, which the token service posts to.
    after_logout = tuple(dict.fromkeys(check_redirect_uri(u) for u in post_logout_redirect_uris))
    if backchannel_logout_uri is not None:
        check_fetch_url(backchannel_logout_uri, "--backchannel-logout-uri")
    secret = new_value(SECRET_BYTES, entropy) if method in SECRET_METHODS else None
    client = Client(
        client_id=entropy(16).hex(),  # hex: never starts with "-", so always a CLI argument
        name=name.strip(),
        auth_method=_method(method),
        grant_types=grants,
        redirect_uris=uris,
        scopes=frozenset(requested),
        secret_hash=hash_secret(secret, entropy) if secret is not None else None,
        created_at=clock(),
        require_consent=require_consent,
        rate_limit=rate_limit,
        rate_burst=rate_burst,
        credentials=credentials,
        resources=allowed,
        dpop_bound=dpop_bound,
        require_par=require_par,
        reuse_access_token=reuse_access_token,
        post_logout_redirect_uris=after_logout,
        backchannel_logout_uri=backchannel_logout_uri,
    )
    return client, secret


def _scope_tokens(scope_list: Iterable[str]) -> tuple[str, ...]:
    """`--scope` values (each may hold several, space-separated) as scope tokens, in order,
    without repeats; RFC 6749 §3.3 characters only."""
    scope_list = list(scope_list)
    try:
        return tuple(dict.fromkeys(s for item in scope_list for s in scopes.parse(item)))
    except InvalidScope:
        raise RegistrationError(
            f"--scope {' '.join(scope_list)!r} has characters RFC 6749 §3.3 does not allow"
        ) from None


def check_resource_identifier(identifier: str, what: str) -> str:
    """RFC 8707 §2: an absolute URI (RFC 3986 §4.3) without a fragment. Ours besides: an
    authority (`https://api.example.com`) or a URN (RFC 8141), at most 2048 characters of
    RFC 3986, kept exactly as given, since `aud` and `resource` are compared as strings."""
    if len(identifier) > MAX_RESOURCE_IDENTIFIER:
        raise RegistrationError(f"{what} is longer than {MAX_RESOURCE_IDENTIFIER} characters")
    if _CONTROL.search(identifier):
        raise RegistrationError(f"{what} must not contain control characters")
    if not _URI_CHARS.fullmatch(identifier):
        raise RegistrationError(f"{what} has characters a URI cannot hold: {identifier!r}")
    if "#" in identifier:
        raise RegistrationError(f"{what} must have no fragment (RFC 8707 §2): {identifier!r}")
    try:
        parts = urlsplit(identifier)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise RegistrationError(f"{what}: malformed URI {identifier!r}") from None
    if not (parts.scheme and parts.hostname) and not _URN.fullmatch(identifier):
        raise RegistrationError(
            f"{what} must be an absolute URI with a host (https://api.example.com) or a URN "
            f"(urn:example:api), got {identifier!r}"
        )
    return identifier


def new_resource(
    *,
    identifier: str,
    scopes: Iterable[str],
    name: str | None = None,
    access_token_ttl: int | None = None,
    clock: Callable[[], float] = time.time,
) -> Resource:
    """A resource server (RFC 8707) and the scopes that belong to it. The issuer's own
    scopes (OpenID Connect's and `offline_access`) are refused: they describe the person and
    the grant, never an API, so no resource can claim them."""
    check_resource_identifier(identifier, "--identifier")
    tokens = _scope_tokens(scopes)
    if not tokens:
        raise RegistrationError("a resource needs at least one --scope")
    theirs = [s for s in tokens if s in PERSON_SCOPES]
    if theirs:
        raise RegistrationError(
            f"--scope {theirs[0]} is the issuer's (OpenID Connect), not a resource's"
        )
    if name is not None:
        name = name.strip()
        if not name or _CONTROL.search(name):
            raise RegistrationError("--name must be non-empty, without control characters")
    if access_token_ttl is not None and (
        isinstance(access_token_ttl, bool)
        or not isinstance(access_token_ttl, int)
        or not 1 <= access_token_ttl <= MAX_RESOURCE_TOKEN_TTL
    ):
        raise RegistrationError(
            f"--access-token-ttl must be whole seconds from 1 to {MAX_RESOURCE_TOKEN_TTL}, "
            f"got {access_token_ttl!r}"
        )
    return Resource(
        identifier=identifier,
        scopes=frozenset(tokens),
        name=name,
        access_token_ttl=access_token_ttl,
        created_at=clock(),
    )


def check_rate_limit(rate: float | None, burst: int | None) -> tuple[float | None, int | None]:
    """A request rate at /token (`--rate-limit`, per second) and its burst (`--rate-burst`,
    requests at once; by default one second's worth, at least 1). Both None: no limit."""
    if rate is None:
        if burst is not None:
            raise RegistrationError("--rate-burst needs --rate-limit")
        return None, None
    if (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not (0 < rate <= MAX_RATE)
    ):  # `not (...)` also refuses NaN
        raise RegistrationError(
            f"--rate-limit must be requests per second > 0 and <= {MAX_RATE}, got {rate!r}"
        )
    if burst is None:
        burst = max(1, math.ceil(rate))
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= MAX_BURST:
        raise RegistrationError(
            f"--rate-burst must be a whole number of requests >= 1 and <= {MAX_BURST}, "
            f"got {burst!r}"
        )
    return float(rate), burst


def _method(value: str) -> AuthMethod:
    for method in AUTH_METHODS:
        if method == value:
            return method
    raise RegistrationError(f"unknown auth method {value!r}")


def new_user(
    *,
    username: str,
    password: str,
    email: str | None = None,
    name: str | None = None,
    entropy: Entropy = secrets.token_bytes,
) -> User:
    if not username.strip() or any(c.isspace() for c in username):
        raise RegistrationError("--username must be non-empty and without spaces")
    if len(password) < 8:
        raise RegistrationError("the password must be at least 8 characters")
    return User(
        sub=new_value(16, entropy),
        username=username,
        password_hash=password_hasher.hash(password),
        email=email,
        name=name,
    )
