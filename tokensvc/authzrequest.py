"""Validating an authorization request (RFC 6749 §4.1.1, §4.1.2.1; OIDC Core §3.1.2.1-2): the
one implementation behind the login front-end's `/authorize` and the token service's `/par`
(RFC 9126 §2.1: a pushed request is validated as `/authorize` would validate it).

Until the client and its redirect URI are established, nothing may redirect: such errors are
`UnsafeRequest` and end on an error page (RFC 6749 §4.1.2.1, RFC 9700 §4.11). Every later error
is an `AuthorizeError`, sent back to the client with `state` and `iss` (RFC 9207) at
`/authorize`, or as a JSON error at `/par` (RFC 9126 §2.3).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from multidict import MultiMapping

from tokensvc import pkce
from tokensvc.digits import whole_number

PROMPTS = frozenset({"none", "login", "consent"})
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_SINGLE = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "response_mode",
    "dpop_jkt",
)
_JKT = re.compile(r"[A-Za-z0-9_-]{43}")  # RFC 9449 §10: an RFC 7638 SHA-256 thumbprint


class UnsafeRequest(Exception):
    """The request cannot be answered at the client's redirect URI: show a page instead."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class AuthorizeError(Exception):
    """An error to send back to the client's redirect URI (RFC 6749 §4.1.2.1)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.redirect_uri = ""
        self.state: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientDescription:
    """What validation needs to know of a client (the internal API's client view has it)."""

    redirect_uris: tuple[str, ...]
    public: bool
    scopes: frozenset[str]
    grant_types: frozenset[str]
    # The resources (RFC 8707) it may ask tokens for, and the display names of those that
    # have one (`tokensvc resource add --name`), for the consent screen.
    resources: tuple[str, ...] = ()
    resource_names: Mapping[str, str] = field(default_factory=dict)
    # RFC 9126 §6: its authorization requests must arrive through `/par`.
    require_par: bool = False

    def api_label(self, resource: str) -> str:
        """How a person is shown a resource: its name and identifier, or the identifier."""
        name = self.resource_names.get(resource)
        return f"{name} ({resource})" if name else resource


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    scope: str
    state: str | None = None
    nonce: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    prompt: tuple[str, ...] = ()
    max_age: int | None = None
    # RFC 8707 §2: the resources (APIs) asked for, and what the consent screen calls each.
    resources: tuple[str, ...] = ()
    apis: tuple[str, ...] = ()
    # RFC 9449 §10: the DPoP key the code's exchange must prove.
    dpop_jkt: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuthorizationRequest:
        tuples = {k: tuple(data.get(k) or ()) for k in ("prompt", "resources", "apis")}
        return cls(**{**data, **tuples})

    @property
    def consent_items(self) -> set[str]:
        """What a person's consent covers: the scopes, and each resource marked with a `"`,
        a character no scope token holds (RFC 6749 §3.3), so neither passes for the other."""
        return set(self.scope.split(" ")) | {f'"{r}' for r in self.resources}


def unrepeated(
    params: MultiMapping[str], names: tuple[str, ...] = ("client_id", "redirect_uri")
) -> None:
    """`names` at most once each: what names the client and where it is answered (or, RFC 9126
    §4, the pushed request) must be unambiguous before anything else is looked at."""
    for name in names:
        if len(params.getall(name, [])) > 1:
            raise UnsafeRequest(f"The {name} parameter was sent more than once.")


def validate(
    params: MultiMapping[str], client: ClientDescription, client_id: str, *, pushed: bool = False
) -> AuthorizationRequest:
    """The request `params` make for `client`: its redirect URI first (`UnsafeRequest`), then
    every other rule (`AuthorizeError`, carrying the redirect URI and `state`). `pushed`: the
    parameters arrived at `/par` (RFC 9126 §2.1), where `request_uri` may not appear and a
    `--require-par` client is at the right place."""
    unrepeated(params)
    redirect_uri = params.get("redirect_uri")
    if not redirect_uri:
        raise UnsafeRequest("The request has no redirect_uri.")
    if redirect_uri not in client.redirect_uris:
        raise UnsafeRequest("The redirect_uri is not registered for this application.")
    try:
        return _validate(params, client, client_id, redirect_uri, pushed)
    except AuthorizeError as exc:
        exc.redirect_uri = redirect_uri
        states = params.getall("state", [])
        exc.state = states[0] if len(states) == 1 else None
        raise


def _validate(
    params: MultiMapping[str],
    client: ClientDescription,
    client_id: str,
    redirect_uri: str,
    pushed: bool,
) -> AuthorizationRequest:
    repeated = [n for n in _SINGLE if len(params.getall(n, [])) > 1]
    if repeated:
        raise AuthorizeError("invalid_request", f"{repeated[0]} was sent more than once.")
    if "request" in params:
        raise AuthorizeError("request_not_supported", "Request objects are not supported.")
    if "request_uri" in params:
        if pushed:  # RFC 9126 §2.1
            raise AuthorizeError("invalid_request", "A pushed request cannot hold request_uri.")
        raise AuthorizeError("request_not_supported", "Request objects are not supported.")
    if client.require_par and not pushed:  # RFC 9126 §6
        raise AuthorizeError(
            "invalid_request", "This client must push its requests first (PAR is required)."
        )
    response_type = params.get("response_type")
    if not response_type:
        raise AuthorizeError("invalid_request", "response_type is required.")
    if response_type != "code":
        raise AuthorizeError("unsupported_response_type", "Only response_type=code is supported.")
    if params.get("response_mode", "query") != "query":
        raise AuthorizeError("invalid_request", "Only response_mode=query is supported.")
    if "authorization_code" not in client.grant_types:
        raise AuthorizeError("unauthorized_client", "The client may not use this flow.")

    scope = _scope(params.get("scope"), client)
    challenge = params.get("code_challenge") or None
    method = params.get("code_challenge_method") or None
    if challenge is None:
        if client.public:
            raise AuthorizeError("invalid_request", "PKCE (code_challenge, S256) is required.")
        if method is not None:
            raise AuthorizeError("invalid_request", "code_challenge_method without a challenge.")
    elif method != pkce.METHOD:
        raise AuthorizeError("invalid_request", "code_challenge_method must be S256.")
    elif not pkce.valid_challenge(challenge):
        raise AuthorizeError("invalid_request", "code_challenge must be 43 base64url characters.")

    prompt = tuple(p for p in (params.get("prompt") or "").split(" ") if p)
    if not set(prompt) <= PROMPTS:
        raise AuthorizeError("invalid_request", "prompt may hold none, login and consent.")
    if "none" in prompt and len(prompt) > 1:
        raise AuthorizeError("invalid_request", "prompt=none cannot be combined.")
    max_age = _max_age(params.get("max_age"))
    resources = _resources(params.getall("resource", []), client)
    dpop_jkt = params.get("dpop_jkt") or None
    if dpop_jkt is not None and not _JKT.fullmatch(dpop_jkt):
        raise AuthorizeError("invalid_request", "dpop_jkt must be a JWK SHA-256 thumbprint.")
    return AuthorizationRequest(
        client_id=client_id,
        redirect_uri=redirect_uri,
        scope=scope,
        state=params.get("state") or None,
        nonce=params.get("nonce") or None,
        code_challenge=challenge,
        code_challenge_method=method,
        prompt=prompt,
        max_age=max_age,
        resources=resources,
        dpop_jkt=dpop_jkt,
        apis=tuple(client.api_label(r) for r in resources),
    )


def _resources(values: list[str], client: ClientDescription) -> tuple[str, ...]:
    """RFC 8707 §2: each an absolute URI without a fragment that the client may ask for;
    anything else is `invalid_target`. The token service checks them again when it mints."""
    for value in values:
        if not urlsplit(value).scheme or "#" in value:
            raise AuthorizeError("invalid_target", "A resource must be an absolute URI.")
        if value not in client.resources:
            raise AuthorizeError("invalid_target", f"The client may not ask for {value}.")
    return tuple(dict.fromkeys(values))


def _scope(raw: str | None, client: ClientDescription) -> str:
    items = list(dict.fromkeys(s for s in (raw or "").split(" ") if s))
    if not items:
        raise AuthorizeError("invalid_scope", "A scope is required (openid for an ID token).")
    if not all(_SCOPE_TOKEN.fullmatch(s) for s in items):
        raise AuthorizeError("invalid_scope", "The scope has characters RFC 6749 forbids.")
    extra = [s for s in items if s not in client.scopes]
    if extra:
        raise AuthorizeError("invalid_scope", f"Scope not allowed for this client: {extra[0]}.")
    return " ".join(items)


def _max_age(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    value = whole_number(raw)
    if value is None or len(raw) > 10:
        raise AuthorizeError("invalid_request", "max_age must be a non-negative integer.")
    return value
