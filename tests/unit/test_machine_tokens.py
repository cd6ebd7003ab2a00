"""tokensvc.machinetokens: reuse while half the lifetime is left, by identity of the client
record and of the signer, bounded, and forgetting a revoked token."""

from __future__ import annotations

from tokensvc.machinetokens import MachineTokens
from tokensvc.models import Client

CLIENT = Client("c", "C", "client_secret_basic", frozenset({"client_credentials"}))
SIGNER = object()


def test_half_the_lifetime_and_the_time_left() -> None:
    cache = MachineTokens()
    cache.put(CLIENT, "a", "aud", SIGNER, "t1", issued_at=1000, expires_at=1600)
    assert cache.get(CLIENT, "a", "aud", SIGNER, 1000) == ("t1", 600)
    assert cache.get(CLIENT, "a", "aud", SIGNER, 1300) == ("t1", 300)  # exactly half left
    assert cache.get(CLIENT, "a", "aud", SIGNER, 1301) is None


def test_another_record_signer_scope_or_audience_misses() -> None:
    cache = MachineTokens()
    cache.put(CLIENT, "a", ("x", "y"), SIGNER, "t1", issued_at=0, expires_at=600)
    reloaded = Client("c", "C", "client_secret_basic", frozenset({"client_credentials"}))
    assert reloaded == CLIENT  # equal, but not the record the token was issued under
    assert cache.get(reloaded, "a", ("x", "y"), SIGNER, 1) is None
    assert cache.get(CLIENT, "a", ("x", "y"), object(), 1) is None
    assert cache.get(CLIENT, "b", ("x", "y"), SIGNER, 1) is None
    assert cache.get(CLIENT, "a", ("y", "x"), SIGNER, 1) is None
    assert cache.get(CLIENT, "a", ("x", "y"), SIGNER, 1) == ("t1", 599)


def test_bounded_oldest_first_and_forget() -> None:
    cache = MachineTokens(capacity=2)
    for i, scope in enumerate(("a", "b", "c")):
        cache.put(CLIENT, scope, "aud", SIGNER, f"t{i}", issued_at=0, expires_at=600)
    assert len(cache) == 2 and cache.get(CLIENT, "a", "aud", SIGNER, 1) is None
    assert cache.forget("t1") is True and cache.forget("t1") is False
    assert cache.get(CLIENT, "b", "aud", SIGNER, 1) is None
    assert cache.forget("t0") is False  # evicted already
    cache.put(CLIENT, "c", "aud", SIGNER, "t3", issued_at=0, expires_at=600)  # replaces t2
    assert cache.forget("t2") is False and cache.get(CLIENT, "c", "aud", SIGNER, 1) == ("t3", 599)
