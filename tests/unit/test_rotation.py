"""`tokensvc.grants.rotation.decide`: what presenting a refresh token in a given state gets
(RFC 9700 §4.14.2). The stores only report states; this one function decides for all of them."""

from __future__ import annotations

import dataclasses

import pytest

from tokensvc.grants.rotation import Live, Rejected, Repeated, decide
from tokensvc.models import Grant, RefreshState

NOW = 1_700_000_000.0
BOX = b"sealed successor response"
LIVE = RefreshState(
    token_hash=b"h" * 32,
    grant=Grant("g-1", "client-1", "user-1", "openid", int(NOW) - 60),
    expires_at=NOW + 3600,
    retired_at=None,
    successor_box=None,
    revoked=False,
)
ROTATED = dataclasses.replace(LIVE, retired_at=NOW - 2, successor_box=BOX)


def test_a_live_token_may_rotate() -> None:
    assert decide(LIVE, NOW, 5) == Live(LIVE)
    assert decide(LIVE, NOW, 0) == Live(LIVE)


@pytest.mark.parametrize(
    "state",
    [
        None,
        dataclasses.replace(LIVE, revoked=True),
        dataclasses.replace(ROTATED, revoked=True),  # a revoked family is never repeated
        dataclasses.replace(LIVE, expires_at=NOW),  # expiry is exclusive
        dataclasses.replace(LIVE, expires_at=NOW - 1),
        dataclasses.replace(ROTATED, expires_at=NOW - 1),  # nor is an expired one reuse
    ],
)
def test_unknown_revoked_and_expired_tokens_are_rejected_without_reuse(
    state: RefreshState | None,
) -> None:
    assert decide(state, NOW, 5) == Rejected(reused=False)


def test_a_repeat_within_the_grace_window_gets_the_same_response() -> None:
    assert decide(ROTATED, NOW, 5) == Repeated(BOX)
    assert decide(ROTATED, NOW - 1.999, 5) == Repeated(BOX)  # racing clocks, just after


@pytest.mark.parametrize(
    ("now", "grace"),
    [
        (NOW + 3, 5),  # exactly at the end of the window: reuse
        (NOW + 10, 5),
        (NOW, 0),  # no grace: every repeat is reuse
        (NOW - 3, 0),  # even a racer whose clock reads before the rotation
    ],
)
def test_a_repeat_after_the_grace_window_is_reuse(now: float, grace: float) -> None:
    assert decide(ROTATED, now, grace) == Rejected(reused=True)


def test_a_rotated_token_without_its_sealed_response_is_reuse() -> None:
    assert decide(dataclasses.replace(ROTATED, successor_box=None), NOW, 5) == Rejected(reused=True)
