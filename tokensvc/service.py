"""The token service's runtime: settings, stores, keys, clock and randomness in one place.

Grants and endpoints receive this object instead of reaching for globals, so a test can run
the real code with a fake clock or a fresh set of stores.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tokensvc.config import Settings
from tokensvc.opaque import Entropy
from tokensvc.signing.keys import KeySet
from tokensvc.signing.tokens import TokenMinter
from tokensvc.storage.stores import Stores


@dataclass(slots=True)
class TokenService:
    settings: Settings
    stores: Stores
    keys: KeySet
    clock: Callable[[], float] = time.time
    entropy: Entropy = secrets.token_bytes
    minter: TokenMinter = field(init=False)

    def __post_init__(self) -> None:
        self.minter = TokenMinter(
            self.settings.issuer, self.keys.signer, self.settings.access_token_ttl, self.entropy
        )
