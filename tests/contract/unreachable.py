"""The check of the stores that cannot reach their server (tests/contract/test_unavailable.py,
the unreachable-server tests of the other contract modules): `StoreUnavailable`, quickly."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest

from tokensvc.errors import StoreUnavailable

QUICK = 3.0  # seconds: an outage must become a 503 promptly


async def assert_unavailable(store: str, call: Callable[[], Awaitable[object]]) -> None:
    """`call()` raises `StoreUnavailable` of `store` (the driver error kept as its cause)
    within `QUICK` seconds."""
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        await call()
    assert caught.value.store == store
    assert caught.value.__cause__ is not None  # the driver error is kept for the log
    assert time.monotonic() - started < QUICK
