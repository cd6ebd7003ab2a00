"""A dict whose entries expire, for in-process stores that must stay bounded.

Expired entries are dropped when looked at and by a sweep of the whole dict, run by `swept`
after a write once `sweep_interval` seconds have passed since the last sweep or the dict has
doubled since then (amortised O(1)). At most the entries of the last `sweep_interval` seconds
plus the live ones are kept, however many keys are tried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class ExpiringDict(Generic[K, V]):
    def __init__(
        self, expires_at: Callable[[V], float], now: float, sweep_interval: float = 60.0
    ) -> None:
        self.entries: dict[K, V] = {}
        self._expires_at = expires_at
        self._sweep_interval = sweep_interval
        self._next_sweep = now + sweep_interval
        self._sweep_size = 1024

    def swept(self, now: float) -> None:
        """Call after a write: sweeps when it is due."""
        if now < self._next_sweep and len(self.entries) < self._sweep_size:
            return
        expires_at = self._expires_at
        self.entries = {k: v for k, v in self.entries.items() if expires_at(v) > now}
        self._next_sweep = now + self._sweep_interval
        self._sweep_size = max(1024, 2 * len(self.entries))

    def __len__(self) -> int:
        """Entries held, expired ones not yet swept included (for tests and metrics)."""
        return len(self.entries)
