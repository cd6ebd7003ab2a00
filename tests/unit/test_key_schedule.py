"""The signing-key schedule (issue 4, item 5): which keys are published and which one signs at
any time t, how `rotate` schedules a new key, and how the running minter follows the schedule
by itself. Time is always passed in."""

from __future__ import annotations

import base64
import hashlib
import math
import warnings

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet as JoseKeySet

from tokensvc.models import Grant
from tokensvc.signing.keyfile import generate_jwks, rotate_jwks
from tokensvc.signing.keys import keyset_from_jwks
from tokensvc.signing.schedule import JWKS_MAX_AGE, Schedule, Window, rotate
from tokensvc.signing.tokens import TokenMinter

T = 1_800_000_000  # "now" of these tests
TTL = 3600


def at(schedule: Schedule, t: float) -> tuple[str, tuple[str, ...]]:
    phase = schedule.phase(t)
    return phase.signing, phase.published


def test_default_lead_is_one_jwks_cache_lifetime() -> None:
    assert JWKS_MAX_AGE == 300
    rotation = rotate([Window("a", 0, 0)], "b", now=T + 0.9, token_ttl=TTL)
    assert rotation.new == Window("b", T, T + JWKS_MAX_AGE)


def test_a_rotation_announces_then_signs_then_retires() -> None:
    rotation = rotate([Window("a", T - 1000, T - 1000)], "b", now=T, lead=300, token_ttl=TTL)
    a, _ = rotation.windows
    # the old key outlives the last token it can sign, plus one cache lifetime
    assert a.retire_at == T + 300 + TTL + 300
    assert rotation.retired == {"a": a.retire_at}
    schedule = Schedule(rotation.windows)
    assert at(schedule, T - 1) == ("a", ("a",))  # b is not announced yet
    assert at(schedule, T) == ("a", ("a", "b"))  # announced, not signing
    assert at(schedule, T + 299.9) == ("a", ("a", "b"))
    assert at(schedule, T + 300) == ("b", ("a", "b"))  # takes over by itself
    assert at(schedule, a.retire_at - 0.1) == ("b", ("a", "b"))
    assert at(schedule, a.retire_at) == ("b", ("b",))
    assert at(schedule, 10 * T) == ("b", ("b",))


def test_phases_cover_time_without_gaps() -> None:
    rotation = rotate([Window("a", T - 1000, T - 1000)], "b", now=T, lead=300, token_ttl=TTL)
    schedule = Schedule(rotation.windows)
    t, seen = 0.0, []
    while t != math.inf:
        phase = schedule.phase(t)
        assert phase.since <= t < phase.until
        assert schedule.phase(phase.until - 0.001) == phase if phase.until != math.inf else True
        seen.append((phase.signing, phase.published))
        t = phase.until
    assert seen == [
        ("a", ("a",)),
        ("a", ("a",)),
        ("a", ("a", "b")),
        ("b", ("a", "b")),
        ("b", ("b",)),
    ]


def test_a_clock_behind_the_file_still_signs_with_the_first_key() -> None:
    # `keys generate` ran on a machine whose clock is ahead of this one's
    schedule = Schedule([Window("a", T, T)])
    assert at(schedule, T - 5) == ("a", ("a",))
    # and with a rotation written by that machine: the earliest signer, always published
    rotation = rotate([Window("a", T, T)], "b", now=T, lead=0, token_ttl=TTL)
    assert at(Schedule(rotation.windows), T - 5) == ("a", ("a",))


def test_a_key_that_signed_keeps_its_turn() -> None:
    # `keys generate` and `keys rotate --lead 0` within one second: the new key comes after
    rotation = rotate([Window("a", T, T)], "b", now=T + 0.5, lead=0, token_ttl=TTL)
    assert rotation.new == Window("b", T, T + 1)
    assert [at(Schedule(rotation.windows), t)[0] for t in (T, T + 1)] == ["a", "b"]


def test_retire_after_and_token_lifetime() -> None:
    old = [Window("a", 0, 0)]
    assert rotate(old, "b", now=T, lead=60, token_ttl=900).retired == {"a": T + 60 + 900 + 60}
    assert rotate(old, "b", now=T, lead=60, token_ttl=900, retire_after=30).retired == {
        "a": T + 60 + 30
    }


def test_rotation_prunes_retired_keys_and_keeps_earlier_retirements() -> None:
    first = rotate([Window("a", 0, 0)], "b", now=T, lead=0, token_ttl=TTL)
    second = rotate(first.windows, "c", now=T + 100, lead=0, token_ttl=TTL)
    a, b, _ = second.windows
    assert a.retire_at == T + TTL  # unchanged: set by the first rotation
    assert b.retire_at == T + 100 + TTL and second.retired == {"b": b.retire_at}
    third = rotate(second.windows, "d", now=T + TTL + 1, lead=0, token_ttl=TTL)
    assert third.pruned == ("a",)
    assert [w.kid for w in third.windows] == ["b", "c", "d"]


def test_a_key_still_waiting_to_sign_is_superseded() -> None:
    slow = rotate([Window("a", 0, 0)], "b", now=T, lead=600, token_ttl=TTL)
    fast = rotate(slow.windows, "c", now=T + 10, lead=0, token_ttl=TTL)
    _, b, _ = fast.windows
    assert b.sign_at is None  # b never signs: c replaced it before its time
    schedule = Schedule(fast.windows)
    assert at(schedule, T + 10)[0] == "c"
    assert at(schedule, T + 700)[0] == "c"
    # a key waiting to sign *before* the new one keeps its turn
    staggered = rotate(slow.windows, "c", now=T + 10, lead=900, token_ttl=TTL)
    schedule = Schedule(staggered.windows)
    assert [at(schedule, t)[0] for t in (T + 599, T + 600, T + 910)] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        ([Window("a", 10, 5)], "sign_at must not be before publish_at"),
        ([Window("a", 10, 20, 20)], "retire_at must be after sign_at"),
        ([Window("a", 10, None, 10), Window("b", 0, 0)], "retire_at must be after publish_at"),
        ([Window("a", 0, 5), Window("b", 0, 5)], "sign from the same time"),
        ([Window("a", 0, 0), Window("b", 0, 5, 100)], "b signs last"),
        ([Window("a", 0)], "no key can sign"),
    ],
)
def test_impossible_schedules_are_refused(windows: list[Window], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Schedule(windows)


def test_rotate_refuses_negative_durations() -> None:
    with pytest.raises(ValueError, match="negative"):
        rotate([Window("a", 0, 0)], "b", now=T, lead=-1, token_ttl=TTL)


# --- the key set and the minter ---------------------------------------------------------------


def rotated_keyset(lead: int = 300):
    jwks, rotation = rotate_jwks(
        generate_jwks("ES256", now=T - 1000), "EdDSA", now=T, lead=lead, token_ttl=TTL
    )
    return keyset_from_jwks(jwks), jwks["keys"][0]["kid"], rotation.new.kid


def test_keyset_caches_each_phase() -> None:
    keys, old, new = rotated_keyset()
    state = keys.at(T)
    assert keys.at(T + 299) is state  # no work inside a phase
    assert keys.signer_at(T + 150) is state.signer
    assert (state.since, state.until) == (T, T + 300)
    later = keys.at(T + 300)
    assert later is not state and later.signer.kid == new
    assert keys.at(T + 10) is not later  # a clock that steps back is answered correctly
    assert keys.at(T + 10).signer.kid == old
    assert [k["kid"] for k in later.public_jwks["keys"]] == [old, new]
    assert set(later.verify_keys) == {old, new}
    assert later.jwks_body.startswith(b'{"keys":[')
    assert all("d" not in k for k in later.public_jwks["keys"])


def test_minter_switches_signer_when_sign_at_passes() -> None:
    keys, old, new = rotated_keyset()
    minter = TokenMinter("https://issuer.example", keys, TTL, lambda n: b"\x01" * n)
    before = minter.access_token(sub="s", client_id="c", scope="a", now=T + 299)
    after = minter.access_token(sub="s", client_id="c", scope="a", now=T + 300)
    grant = Grant(grant_id="g", client_id="c", sub="s", scope="openid", auth_time=T)
    id_token = minter.id_token(grant=grant, access_token=after, now=T + 300)
    published = JoseKeySet.import_key_set(keys.at(T + 300).public_jwks)
    algs = ["ES256", "EdDSA"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc flags EdDSA as deprecated (RFC 9864)
        assert jwt.decode(before, published, algorithms=algs).header["kid"] == old
        access = jwt.decode(after, published, algorithms=algs)
        ident = jwt.decode(id_token, published, algorithms=algs)
    assert access.header == {"alg": "EdDSA", "kid": new, "typ": "at+jwt"}
    assert ident.header["kid"] == new
    # at_hash follows the ID token's own alg (EdDSA: the left half of SHA-512)
    digest = hashlib.sha512(after.encode()).digest()[:32]
    assert ident.claims["at_hash"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
