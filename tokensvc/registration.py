"""Registering clients and users: validation and credential generation shared by the CLI and
`tokensvc dev`. Secrets are returned once to the caller and only their hashes are kept."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from argon2 import PasswordHasher

from tokensvc import scope as scopes
from tokensvc.errors import InvalidScope
from tokensvc.models import AUTH_METHODS, GRANT_TYPES, AuthMethod, Client, User
from tokensvc.opaque import SECRET_BYTES, Entropy, hash_secret, new_value

# Bounds of a client's rate limit: beyond 100 000 requests per second a limit means nothing
# (and the Redis bucket counts in microseconds).
MAX_RATE = 100_000
MAX_BURST = 1_000_000
DEFAULT_USER_SCOPES = ("openid", "profile", "email", "offline_access")
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
password_hasher = PasswordHasher()  # argon2id with argon2-cffi's RFC 9106 low-memory profile


class RegistrationError(ValueError):
    """Input that cannot be registered; the message is one line for the operator."""


def check_redirect_uri(uri: str) -> str:
    """RFC 6749 §3.1.2 absolute, no fragment; RFC 9700 §2.6: https, or http on loopback only;
    RFC 8252 §7.1: private-use schemes (reverse domain names) for native apps."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise RegistrationError(f"malformed redirect URI {uri!r}: {exc}") from None
    if not parts.scheme or parts.fragment or "#" in uri:
        raise RegistrationError(f"redirect URI must be absolute without a fragment: {uri!r}")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise RegistrationError(f"http redirect URIs are allowed only on loopback: {uri!r}")
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise RegistrationError(f"redirect URI needs a host: {uri!r}")
    if parts.scheme not in ("http", "https") and "." not in parts.scheme:
        raise RegistrationError(f"custom schemes must be reverse domain names: {uri!r}")
    return uri


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
    entropy: Entropy = secrets.token_bytes,
    clock: Callable[[], float] = time.time,
) -> tuple[Client, str | None]:
    """Validate a registration and return the client with its one-time plaintext secret."""
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
    if method not in AUTH_METHODS:
        raise RegistrationError(f"--auth-method must be one of {', '.join(AUTH_METHODS)}")
    if public and method != "none":
        raise RegistrationError("a --public client authenticates with 'none'")
    if method == "none" and "client_credentials" in grants:
        raise RegistrationError("client_credentials needs a confidential client")
    uris = tuple(dict.fromkeys(check_redirect_uri(u) for u in redirect_uris))
    if "authorization_code" in grants and not uris:
        raise RegistrationError("authorization_code needs at least one --redirect-uri")
    try:
        requested = [s for item in scope_list for s in scopes.parse(item)]
    except InvalidScope:
        raise RegistrationError(
            f"--scope {' '.join(scope_list)!r} has characters RFC 6749 §3.3 does not allow"
        ) from None
    if not requested and grants & {"authorization_code", "password"}:
        requested = list(DEFAULT_USER_SCOPES)
    rate_limit, rate_burst = check_rate_limit(rate_limit, rate_burst)
    secret = None if method == "none" else new_value(SECRET_BYTES, entropy)
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
    )
    return client, secret


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
