"""The changes themselves. Both surfaces call these and nothing else writes what they write,
so the checks (a client's federation and resources must be registered), the audit line and
the secret's one-time return are the same whichever way a change arrives.

Stores are reached through their protocols: the admin API passes the service's own (behind
its caches, which forget the changed record at once); the CLI passes Postgres directly. Every
other replica learns of the change from the database's change feed within a second.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TypedDict

from tokensvc.admin.audit import Audit
from tokensvc.models import SECRET_METHODS, Client, Credentials, Federation, Resource
from tokensvc.opaque import SECRET_BYTES, Entropy, hash_secret, new_value
from tokensvc.registration import RegistrationError, new_client
from tokensvc.storage.protocols import ClientStore, FederationStore, GrantStore, ResourceStore

# A rotation may keep the replaced secret working for at most a week: long enough for any
# rollout, short enough that a forgotten overlap does not turn into a second permanent secret.
MAX_PREVIOUS_SECRET_TTL = 7 * 86_400


class ClientFields(TypedDict, total=False):
    """What a client is registered with: `registration.new_client`'s arguments."""

    name: str
    grant_types: Iterable[str]
    redirect_uris: Iterable[str]
    scope_list: Iterable[str]
    public: bool
    auth_method: str | None
    require_consent: bool
    rate_limit: float | None
    rate_burst: int | None
    credentials: Credentials
    resources: Iterable[str]
    dpop_bound: bool
    require_par: bool
    reuse_access_token: bool
    post_logout_redirect_uris: Iterable[str]
    backchannel_logout_uri: str | None


class Conflict(Exception):
    """The record exists already (a resource identifier, a federation issuer, a client id)."""


class Missing(RegistrationError):
    """The change names something that is not registered (a federation, a resource)."""


@dataclass(frozen=True, slots=True)
class Administration:
    clients: ClientStore
    resources: ResourceStore
    federations: FederationStore
    grants: GrantStore
    audit: Audit
    clock: Callable[[], float] = time.time
    entropy: Entropy = secrets.token_bytes

    # --- clients ---------------------------------------------------------------------------

    async def create_client(self, fields: ClientFields) -> tuple[Client, str | None]:
        """Register a client; its secret (when its method uses one) is returned this once."""
        client, secret = new_client(**fields, entropy=self.entropy, clock=self.clock)
        await self._check_references(client)
        if not await self.clients.add(client):
            raise Conflict("a client with that id exists; try again")
        self.audit("client.created", client_id=client.client_id)
        return client, secret

    async def replace_client(
        self, client_id: str, fields: ClientFields
    ) -> tuple[Client, str | None] | None:
        """Replace a client's metadata (RFC 7592 §2.2 semantics): the id and the registration
        time stay; so does the secret while the method uses one. A client moving to a secret
        method gets a new secret (returned once); one moving away loses its secret. None: no
        such client."""
        old = await self.clients.get(client_id)
        if old is None:
            return None
        fresh, new_secret = new_client(**fields, entropy=self.entropy, clock=self.clock)
        await self._check_references(fresh)
        keeps_secret = old.auth_method in SECRET_METHODS and fresh.auth_method in SECRET_METHODS
        client = replace(
            fresh,
            client_id=old.client_id,
            created_at=old.created_at,
            secret_hash=old.secret_hash if keeps_secret else fresh.secret_hash,
            previous_secret_hash=old.previous_secret_hash if keeps_secret else None,
            previous_secret_expires_at=old.previous_secret_expires_at if keeps_secret else None,
        )
        if not await self.clients.replace(client):
            return None  # removed meanwhile
        self.audit("client.updated", client_id=client_id)
        return client, None if keeps_secret else new_secret

    async def rotate_secret(
        self, client_id: str, previous_secret_ttl: int = 0
    ) -> tuple[Client, str] | None:
        """A new secret, returned once; the one it replaces keeps working for
        `previous_secret_ttl` seconds (0: not at all), so a rollout can switch every instance
        of the client without a failed request. None: no such client."""
        if (
            isinstance(previous_secret_ttl, bool)
            or not isinstance(previous_secret_ttl, int)
            or not 0 <= previous_secret_ttl <= MAX_PREVIOUS_SECRET_TTL
        ):
            raise RegistrationError(
                f"previous_secret_ttl must be whole seconds from 0 to {MAX_PREVIOUS_SECRET_TTL}"
            )
        old = await self.clients.get(client_id)
        if old is None:
            return None
        if old.auth_method not in SECRET_METHODS:
            raise RegistrationError(f"a {old.auth_method} client has no secret to rotate")
        secret = new_value(SECRET_BYTES, self.entropy)
        keep = previous_secret_ttl > 0 and old.secret_hash is not None
        client = replace(
            old,
            secret_hash=hash_secret(secret, self.entropy),
            previous_secret_hash=old.secret_hash if keep else None,
            previous_secret_expires_at=self.clock() + previous_secret_ttl if keep else None,
        )
        if not await self.clients.replace(client):
            return None
        self.audit(
            "client.secret_rotated", client_id=client_id, previous_secret_ttl=previous_secret_ttl
        )
        return client, secret

    async def remove_client(self, client_id: str) -> bool:
        """Remove a client with its grants, refresh tokens and consents."""
        removed = await self.clients.remove(client_id)
        if removed:
            self.audit("client.removed", client_id=client_id)
        return removed

    async def _check_references(self, client: Client) -> None:
        issuer = client.credentials.federated_issuer
        if issuer is not None and await self.federations.get(issuer) is None:
            raise Missing(f"no federation {issuer!r}: add it first")
        for identifier in client.resources:
            if await self.resources.get(identifier) is None:
                raise Missing(f"no resource {identifier!r}: add it first")

    # --- resources and federations -----------------------------------------------------------

    async def add_resource(self, resource: Resource) -> None:
        if not await self.resources.add(resource):
            raise Conflict(f"the resource {resource.identifier!r} exists already")
        self.audit("resource.created", identifier=resource.identifier)

    async def remove_resource(self, identifier: str) -> bool:
        """No new token names it from then on; tokens issued before expire as they would."""
        removed = await self.resources.remove(identifier)
        if removed:
            self.audit("resource.removed", identifier=identifier)
        return removed

    async def add_federation(self, federation: Federation) -> None:
        if not await self.federations.add(federation):
            raise Conflict(f"the issuer {federation.issuer!r} is trusted already")
        self.audit("federation.created", issuer=federation.issuer)

    async def remove_federation(self, issuer: str) -> bool:
        """Its clients fail to authenticate from then on."""
        removed = await self.federations.remove(issuer)
        if removed:
            self.audit("federation.removed", issuer=issuer)
        return removed

    # --- grants ------------------------------------------------------------------------------

    async def revoke_grant(self, grant_id: str) -> bool:
        """Revoke a live grant: its refresh tokens at once, its access tokens at /introspect
        and /userinfo (both look the grant up). False: no live grant of that id."""
        grant = await self.grants.grant(grant_id)
        if grant is None:
            return False
        await self.grants.revoke_grant(grant_id, self.clock())
        self.audit("grant.revoked", grant_id=grant_id, client_id=grant.client_id, sub=grant.sub)
        return True
