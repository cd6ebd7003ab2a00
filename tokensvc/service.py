"""The token service's runtime: settings, stores, keys, clock and randomness in one place.

Grants and endpoints receive this object instead of reaching for globals, so a test can run
the real code with a fake clock or a fresh set of stores.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from tokensvc.config import Settings
from tokensvc.metrics import Metrics, TimedStore
from tokensvc.opaque import Entropy
from tokensvc.signing.keys import KeySet
from tokensvc.signing.tokens import TokenMinter
from tokensvc.storage.cache import CachedClients
from tokensvc.storage.stores import Stores


@dataclass(slots=True)
class TokenService:
    settings: Settings
    stores: Stores
    keys: KeySet
    clock: Callable[[], float] = time.time
    entropy: Entropy = secrets.token_bytes
    metrics: Metrics = field(default_factory=Metrics)
    minter: TokenMinter = field(init=False)

    def __post_init__(self) -> None:
        self.stores = timed_stores(self.stores, self.metrics)
        self.minter = TokenMinter(
            self.settings.issuer, self.keys, self.settings.access_token_ttl, self.entropy
        )

    def use_keys(self, keys: KeySet) -> None:
        """Swap in a reloaded key file (SIGHUP, timer): the next token follows its schedule."""
        self.keys = keys
        self.minter.keys = keys


def timed_stores(stores: Stores, metrics: Metrics) -> Stores:
    """The same stores, each call observed in `tokensvc_store_duration_seconds`."""
    if isinstance(stores.codes, TimedStore):
        return stores
    wrapped: dict[str, Any] = {}
    for f in fields(stores):
        store = getattr(stores, f.name)
        if isinstance(store, CachedClients):  # time the database behind the cache, not hits
            store.instrument(lambda inner, name=f.name: TimedStore(inner, name, metrics))
        else:
            wrapped[f.name] = TimedStore(store, f.name, metrics)
    return replace(stores, **wrapped)
