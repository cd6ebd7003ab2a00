"""Which resources (RFC 8707) a token is for, and so its `aud`, its scope and its lifetime.

A client may get tokens only for resources it was registered with (`client add --resource`).
A code or refresh token carries the resources the person granted at /authorize; `resource` at
/token narrows them (RFC 8707 §2.2), never widens them, and without it the token is for all
of them. With no resource at all the token is for the issuer (`aud` = the issuer, RFC 9068
§3), as before resources existed.

Scope follows the target (the SPEC, "Resources and audiences"):
* for resources, a token holds only scopes that belong to one of them, plus the person scopes
  (`openid`, `profile`, `email`, ..., `offline_access`) where the grant has a person; a scope
  of no requested resource is `invalid_scope`;
* for the issuer, a token holds no scope of the client's resources (those are granted only in
  tokens for their resource); a client without resources is unaffected.

The lifetime is the shortest of the service's access-token lifetime and every target
resource's `access_token_ttl`, and `expires_in` says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from urllib.parse import urlsplit

from tokensvc import scope as scopes
from tokensvc.errors import InvalidScope, InvalidTarget
from tokensvc.models import Client, Resource
from tokensvc.repeated import values
from tokensvc.service import TokenService
from tokensvc.storage.cache import Cached

MAX_RESOURCES = 10  # per request: an API call chain names a few, never dozens


class Target:
    """What a token is for: `resources` (empty: the issuer). What every token for it shares
    (`aud`, the union of the scopes, the lifetime cap) is worked out once, when it is built."""

    __slots__ = ("_aud", "_cap", "_own", "_scopes", "identifiers", "resources")

    def __init__(self, resources: tuple[Resource, ...] = ()) -> None:
        self.resources = resources
        self._scopes: dict[tuple[object, ...], str] = {}  # `scope`'s answers, remembered
        self.identifiers = tuple(r.identifier for r in resources)
        self._aud: str | list[str] | None = (
            None
            if not resources
            else self.identifiers[0]
            if len(resources) == 1
            else list(self.identifiers)
        )
        self._own: frozenset[str] = frozenset().union(*(r.scopes for r in resources))
        caps = [r.access_token_ttl for r in resources if r.access_token_ttl]
        self._cap = min(caps) if caps else None

    def audience(self, default: str) -> str | list[str]:
        """The token's `aud` (RFC 9068 §3): one identifier as a string, several as a list;
        `default` (the issuer) for none."""
        return default if self._aud is None else self._aud

    def lifetime(self, default: int) -> int:
        """Seconds the access token lives: capped by each resource's `access_token_ttl`."""
        return default if self._cap is None or self._cap > default else self._cap

    def scope(
        self, requested: str | None, allowed: Iterable[str], hidden: frozenset[str], person: bool
    ) -> str:
        """The scope to issue: `requested` (or, when absent, everything permitted) within
        `allowed` (the client's or the grant's), cut to this target. `hidden`: scopes of the
        client's resources, never in a token for the issuer; `person`: whether the person
        scopes may appear. A target reused for one client (`resolve`) answers a repeated
        question from memory (refusals are not remembered)."""
        allowed = tuple(allowed)
        question = (requested, allowed, hidden, person)
        answer = self._scopes.get(question)
        if answer is None:
            answer = self._scope(requested, allowed, hidden, person)
            if len(self._scopes) < 16:
                self._scopes[question] = answer
        return answer

    def _scope(
        self, requested: str | None, allowed: tuple[str, ...], hidden: frozenset[str], person: bool
    ) -> str:
        if self.resources:
            own = self._own
            permitted = [s for s in allowed if s in own or (person and s in scopes.PERSON_SCOPES)]
        else:
            permitted = [s for s in allowed if s not in hidden]
        if requested is None or not scopes.parse(requested):
            return " ".join(permitted)
        wanted = scopes.parse(requested)
        strange = [s for s in wanted if s not in permitted and s in allowed]
        if strange:
            where = "the requested resources" if self.resources else "this token's target"
            raise InvalidScope(
                f"Scope not for {where}: {' '.join(strange)}. A resource's scopes come with "
                "a resource parameter naming it."
            )
        return scopes.narrow(requested, tuple(permitted), "")


ISSUER = Target()


@lru_cache(maxsize=1024)
def _check_identifier(identifier: str) -> None:
    """RFC 8707 §2: an absolute URI without a fragment."""
    try:
        parts = urlsplit(identifier)
    except ValueError:
        raise InvalidTarget("A resource must be an absolute URI.") from None
    if not parts.scheme or "#" in identifier or any(c.isspace() for c in identifier):
        raise InvalidTarget("A resource must be an absolute URI without a fragment.")


async def target(
    svc: TokenService,
    client: Client,
    params: Mapping[str, str],
    granted: tuple[str, ...] | None = None,
) -> Target:
    """The target of a token request: the `resource` parameters (each the client's, and in
    `granted` when the request redeems a grant), else the grant's resources, else the
    issuer. `invalid_target` for a resource that is malformed, not the client's, not granted,
    or no longer registered."""
    requested = values(params, "resource")
    if not requested:
        if not granted:
            return ISSUER
        requested = granted
    return await resolve(svc, client, requested, granted)


async def resolve(
    svc: TokenService,
    client: Client,
    identifiers: tuple[str, ...],
    granted: tuple[str, ...] | None = None,
) -> Target:
    """`identifiers` as registered resources, checked as `target` says. The same request of
    the same client gets the same `Target` back while every resource in it is the record the
    store still serves (so a removal or change is seen exactly as without it)."""
    if len(identifiers) > MAX_RESOURCES:
        raise InvalidTarget(f"At most {MAX_RESOURCES} resources per request.")
    store = svc.stores.resources
    found: list[Resource] = []
    for identifier in dict.fromkeys(identifiers) if len(identifiers) > 1 else identifiers:
        _check_identifier(identifier)
        if identifier not in client.resources:
            raise InvalidTarget(f"The client may not get tokens for {identifier}.")
        if granted is not None and identifier not in granted:
            raise InvalidTarget(f"{identifier} was not granted.")
        fresh, resource = store.peek(identifier) if isinstance(store, Cached) else (False, None)
        if not fresh:
            resource = await store.get(identifier)
        if resource is None:
            raise InvalidTarget(f"{identifier} is not a registered resource.")
        found.append(resource)
    key = (client.client_id, identifiers)
    known = _TARGETS.get(key)
    if (
        known is not None
        and len(known.resources) == len(found)
        and all(a is b for a, b in zip(known.resources, found, strict=True))
    ):
        return known
    made = Target(tuple(found))
    if len(_TARGETS) >= MAX_TARGETS:
        _TARGETS.clear()
    _TARGETS[key] = made
    return made


# Targets already resolved, by (client, resources asked for): the hot path of a client asking
# for the same API again and again reuses its Target and the scopes it worked out.
MAX_TARGETS = 4096
_TARGETS: dict[tuple[str, tuple[str, ...]], Target] = {}


async def scope_for(
    svc: TokenService,
    client: Client,
    to: Target,
    requested: str | None,
    allowed: tuple[str, ...],
    *,
    person: bool,
) -> str:
    """The scope of a token for `to` (see `Target.scope`); `allowed` in the order a default
    scope lists them. A client without resources asking for the issuer takes the plain rule
    of RFC 6749 §3.3, with no store read: the `client_credentials` fast path."""
    if not to.resources and not client.resources:
        return scopes.narrow(requested, allowed, " ".join(allowed))
    hidden = frozenset() if to.resources else await hidden_scopes(svc, client)
    return to.scope(requested, allowed, hidden, person)


async def hidden_scopes(svc: TokenService, client: Client) -> frozenset[str]:
    """The scopes of the client's resources: never granted in a token for the issuer."""
    if not client.resources:
        return frozenset()
    hidden: set[str] = set()
    for identifier in client.resources:
        resource = await svc.stores.resources.get(identifier)
        if resource is not None:
            hidden |= resource.scopes
    return frozenset(hidden)
