"""In-memory authorization codes (the `tokensvc dev` default); atomic through the event loop:
`consume` does not await between reading a code and marking it used."""

from __future__ import annotations

import time
from collections.abc import Callable

from tokensvc.inprocess import InProcess
from tokensvc.models import CodeRecord, CodeReplayed
from tokensvc.storage.protocols import USED_CODE_MEMORY

Clock = Callable[[], float]


class MemoryCodes(InProcess):
    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._codes: dict[bytes, tuple[float, CodeRecord | CodeReplayed]] = {}

    async def put(self, code_hash: bytes, record: CodeRecord, ttl: int) -> None:
        self._sweep()
        self._codes[code_hash] = (self._clock() + ttl, record)

    async def consume(self, code_hash: bytes) -> CodeRecord | CodeReplayed | None:
        entry = self._codes.get(code_hash)
        now = self._clock()
        if entry is None or entry[0] <= now:
            return None
        _, value = entry
        if isinstance(value, CodeRecord):
            used = CodeReplayed(value.grant.grant_id)
            self._codes[code_hash] = (max(entry[0], now + USED_CODE_MEMORY), used)
        return value

    def _sweep(self) -> None:
        if len(self._codes) % 1024 == 0:
            now = self._clock()
            for key in [k for k, (exp, _) in self._codes.items() if exp <= now]:
                del self._codes[key]
