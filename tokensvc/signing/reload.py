"""Re-reading `TOKENSVC_KEYS_FILE` while the service runs: on SIGHUP and on a timer.

A file that cannot be read or does not validate is logged and ignored; the keys in use stay
(the service never stops signing and never publishes an empty JWKS because of an edit). The
timer reads the file's bytes and parses them only when they changed, so it costs one small
read per interval.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from tokensvc.signing.keys import KeySet, parse_keys

log = structlog.get_logger("tokensvc.keys")


class KeysReloader:
    __slots__ = ("_apply", "_clock", "_current", "_interval", "_loaded", "_seen", "_wake", "path")

    def __init__(
        self,
        path: str | os.PathLike[str],
        current: KeySet,
        apply: Callable[[KeySet], None],
        *,
        loaded: bytes | None,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`loaded`: the bytes `current` was parsed from; `interval`: seconds between timer
        checks (0: only on SIGHUP)."""
        self.path = Path(path)
        self._current = current
        self._apply = apply
        self._loaded = loaded
        self._seen = loaded  # the last bytes looked at, good or bad: the timer skips them
        self._interval = interval
        self._clock = clock
        self._wake = asyncio.Event()

    def request(self) -> None:
        """Reload soon (the SIGHUP handler)."""
        self._wake.set()

    async def reload(self, reason: str) -> bool:
        """Read the file now; True when new keys are in use."""
        try:
            raw = await asyncio.to_thread(self.path.read_bytes)
        except OSError as exc:
            log.warning(
                "keys reload failed; keeping the keys in use",
                reason=reason,
                file=str(self.path),
                error=exc.strerror or str(exc),
            )
            return False
        if raw == self._loaded or (raw == self._seen and reason == "timer"):
            if reason == "SIGHUP":
                log.info("keys file unchanged", file=str(self.path))
            return False
        self._seen = raw
        try:
            keys = await asyncio.to_thread(parse_keys, raw)
        except ValueError as exc:
            log.warning(
                "keys reload failed; keeping the keys in use",
                reason=reason,
                file=str(self.path),
                error=str(exc),
            )
            return False
        now = self._clock()
        dropped = [kid for kid in self._current.at(now).verify_keys if kid not in keys.kids]
        if dropped:
            # Tokens those keys signed stop verifying: an emergency replacement, or a mistake.
            log.warning("keys reload drops published keys", kids=dropped)
        self._current, self._loaded = keys, raw
        self._apply(keys)
        state = keys.at(now)
        log.info(
            "keys reloaded",
            reason=reason,
            file=str(self.path),
            signing_kid=state.signer.kid,
            published=list(state.verify_keys),
            next_change=_epoch(state.until),
        )
        return True

    async def run(self) -> None:
        """Reload on every `request()` and every `interval` seconds, until cancelled."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval or None)
                reason = "SIGHUP"
            except TimeoutError:
                reason = "timer"
            self._wake.clear()
            await self.reload(reason)


def _epoch(value: float) -> int | None:
    return int(value) if value != float("inf") else None
