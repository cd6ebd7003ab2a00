"""The pure parts of client assertions: subject patterns and key-cache lifetimes."""

from __future__ import annotations

import pytest

from tokensvc.clientauth.assertion import subject_pattern
from tokensvc.clientauth.remotekeys import DEFAULT_TTL, MAX_TTL, MIN_TTL, cache_ttl


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        ("system:serviceaccount:payments:*", "system:serviceaccount:payments:api", True),
        ("system:serviceaccount:payments:*", "system:serviceaccount:payments:", True),
        ("system:serviceaccount:payments:*", "system:serviceaccount:payments:a:b", False),
        ("system:serviceaccount:payments:*", "system:serviceaccount:billing:api", False),
        ("system:serviceaccount:*:api", "system:serviceaccount:payments:api", True),
        ("spiffe://example.org/ns/*/sa/api", "spiffe://example.org/ns/pay/sa/api", True),
        ("spiffe://example.org/ns/*/sa/api", "spiffe://example.org/ns/a/b/sa/api", False),
        ("repo:org/app:ref:refs/heads/main", "repo:org/app:ref:refs/heads/main", True),
        ("repo:org/app:ref:refs/heads/main", "repo:org/app:ref:refs/heads/mainx", False),
        ("a.b", "axb", False),  # no regular-expression syntax leaks through
        ("a+", "aa", False),
    ],
)
def test_subject_patterns(pattern: str, subject: str, matches: bool) -> None:
    assert bool(subject_pattern(pattern).fullmatch(subject)) is matches


@pytest.mark.parametrize(
    ("header", "ttl"),
    [
        (None, DEFAULT_TTL),
        ("no-cache", DEFAULT_TTL),
        ("public, max-age=600", 600.0),
        ("max-age=0", MIN_TTL),
        ('max-age="90"', 90.0),
        ("max-age=99999999", MAX_TTL),
        ("s-maxage=10, max-age=120", 120.0),
    ],
)
def test_key_cache_lifetime_follows_cache_control_within_bounds(
    header: str | None, ttl: float
) -> None:
    assert cache_ttl(header) == ttl
