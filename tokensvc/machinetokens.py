"""The opt-in machine-token cache (`client add --reuse-access-token`, what ory/hydra#2046 asks
for): a `client_credentials` request may get the bearer token last issued to the same client for
the same scope and audience while at least half of its lifetime is left, with `expires_in` the
time that is left. Off by default: every holder of a reused token shares its fate (revoking it
revokes it for all of them), and a token is no longer one request's.

Per process, each replica keeping its own. An entry is used only while the client record it was
issued under is the one in force (a change to the client — scopes, secret, removal — reaches
every replica's client cache through the change feed, and the reloaded record misses here) and
while the key that signed it is still the one signing. `/revoke` of such a token forgets it
here at once and, through a change of its client, on every other replica within a second.
Sender-constrained requests (DPoP, mTLS) never reuse: their token is bound to the request.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokensvc.models import Client

CAPACITY = 10_000  # entries at most; the oldest goes first
Audience = str | tuple[str, ...]
Key = tuple[str, str, Audience]  # client_id, scope, audience


@dataclass(frozen=True, slots=True)
class _Entry:
    client: Client  # the record it was issued under (compared by identity)
    signer: object  # the signer that signed it (compared by identity)
    access_token: str
    issued_at: int
    expires_at: int


class MachineTokens:
    """Bearer tokens issued to clients that opted in, by client, scope and audience."""

    __slots__ = ("_by_token", "_capacity", "_entries")

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._entries: dict[Key, _Entry] = {}
        self._by_token: dict[str, Key] = {}
        self._capacity = capacity

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self, client: Client, scope: str, audience: Audience, signer: object, now: int
    ) -> tuple[str, int] | None:
        """(the token, seconds it has left) when one may be reused now; else None."""
        entry = self._entries.get((client.client_id, scope, audience))
        if entry is None or entry.client is not client or entry.signer is not signer:
            return None
        left = entry.expires_at - now
        if 2 * left < entry.expires_at - entry.issued_at:  # less than half its lifetime left
            return None
        return entry.access_token, left

    def put(
        self,
        client: Client,
        scope: str,
        audience: Audience,
        signer: object,
        access_token: str,
        issued_at: int,
        expires_at: int,
    ) -> None:
        key = (client.client_id, scope, audience)
        old = self._entries.pop(key, None)
        if old is not None:
            self._by_token.pop(old.access_token, None)
        elif len(self._entries) >= self._capacity:
            oldest = next(iter(self._entries))
            self._by_token.pop(self._entries.pop(oldest).access_token, None)
        self._entries[key] = _Entry(client, signer, access_token, issued_at, expires_at)
        self._by_token[access_token] = key

    def forget(self, access_token: str) -> bool:
        """Never hand `access_token` out again (it was revoked); whether it was held here."""
        key = self._by_token.pop(access_token, None)
        if key is None:
            return False
        del self._entries[key]
        return True
