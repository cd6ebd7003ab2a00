"""GrantStore contract (issue, rotate, revoke_grant): memory and Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import pytest

from tests.contract.backends import NOW, Stores
from tokensvc.grants import rotation
from tokensvc.grants.rotation import Rejected, Repeated, Rotated
from tokensvc.models import Client, Grant, GrantSummary, RefreshState, SessionGrant, Successor
from tokensvc.opaque import lookup_hash

TTL = 3600.0
SuccessorFactory = Callable[[RefreshState], Successor]


class Factory:
    """A successor factory that records the states it was shown."""

    def __init__(self, name: str, expires_at: float = NOW + 2 * TTL) -> None:
        self.token_hash = lookup_hash(name)
        self.box = f"sealed response for {name}".encode()
        self.expires_at = expires_at
        self.seen: list[RefreshState] = []

    def __call__(self, state: RefreshState) -> Successor:
        self.seen.append(state)
        return self.successor()

    def successor(self) -> Successor:
        return Successor(self.token_hash, self.expires_at, self.box)


def refuse(state: RefreshState) -> Successor:
    raise LookupError("client disabled meanwhile")


def never(state: RefreshState) -> Successor:
    raise AssertionError("the successor factory must not be called for a dead token")


async def issued(
    stores: Stores, grant_id: str = "grant-1", name: str = "rt-0", expires_at: float = NOW + TTL
) -> tuple[Grant, bytes]:
    """A client, a grant and its first refresh token (the hash of `name`)."""
    await stores.clients.add(
        Client("client-1", "App", "client_secret_basic", frozenset({"refresh_token"}))
    )
    grant = Grant(
        grant_id=grant_id,
        client_id="client-1",
        sub="user-1",
        scope="openid offline_access",
        auth_time=int(NOW) - 60,
        acr="1",
        amr=("pwd", "otp"),
        sid="sid-9",
        claims={"email": "u@example.com", "email_verified": True, "groups": ["a", "b"]},
    )
    token_hash = lookup_hash(name)
    assert await stores.grants.issue(grant, token_hash, expires_at, NOW) is True
    return grant, token_hash


async def rotate(
    stores: Stores, token_hash: bytes, now: float, grace: float, factory: SuccessorFactory
) -> object:
    """What the refresh grant does: read, decide, build the successor, rotate."""
    return await rotation.rotate(stores.grants, token_hash, now, grace, factory)


async def racing_rotations(stores: Stores, grace: float) -> tuple[list[Factory], list[object]]:
    """Thirty concurrent rotations of one fresh token at NOW + 1, each racer with a successor of
    its own (`rt-succ-0` to `rt-succ-29`): the racers and their outcomes, in that order."""
    _, t0 = await issued(stores)
    factories = [Factory(f"rt-succ-{i}") for i in range(30)]
    await stores.warm(30)
    outcomes = await asyncio.gather(*(rotate(stores, t0, NOW + 1, grace, f) for f in factories))
    return factories, list(outcomes)


# --------------------------------------------------------------------------- issue


async def test_issue_stores_grant_and_first_token(stores: Stores) -> None:
    await issued(stores)
    assert await stores.count_tokens("grant-1") == 1


async def test_issue_after_revoke_stores_the_grant_revoked(stores: Stores) -> None:
    """A code replay that overtakes the code's first exchange revokes the grant first; the
    exchange's `issue` then reports the grant dead and its token never rotates."""
    await stores.clients.add(Client("client-1", "App", "none", frozenset({"refresh_token"})))
    await stores.grants.revoke_grant("grant-early", NOW)
    grant = Grant("grant-early", "client-1", "user-1", "openid", int(NOW))
    assert await stores.grants.issue(grant, lookup_hash("rt-x"), NOW + TTL, NOW + 1) is False
    assert await stores.count_tokens("grant-early") == 1
    assert await rotate(stores, lookup_hash("rt-x"), NOW + 2, 5, never) == Rejected()
    await stores.grants.revoke_grant("grant-early", NOW + 3)  # still idempotent
    assert await rotate(stores, lookup_hash("rt-x"), NOW + 4, 5, never) == Rejected()


async def test_revocation_after_issue_and_before_it_end_the_same(stores: Stores) -> None:
    _, t0 = await issued(stores, "grant-late")
    await stores.grants.revoke_grant("grant-late", NOW + 1)
    assert await rotate(stores, t0, NOW + 2, 5, never) == Rejected()
    assert await stores.count_tokens("grant-late") == 1


# --------------------------------------------------------------------------- rotate


async def test_rotate_happy_path(stores: Stores) -> None:
    grant, t0 = await issued(stores)
    first = Factory("rt-1")
    outcome = await rotate(stores, t0, NOW + 10, 5, first)

    assert isinstance(outcome, Rotated)
    expected = RefreshState(t0, grant, NOW + TTL, None, None, False)
    assert outcome.state == expected
    assert first.seen == [expected]
    assert await stores.count_tokens("grant-1") == 2

    # The successor is live and rotates in turn, within the same family and grant.
    second = Factory("rt-2")
    outcome2 = await rotate(stores, first.token_hash, NOW + 20, 5, second)
    assert isinstance(outcome2, Rotated)
    assert outcome2.state == RefreshState(
        first.token_hash, grant, first.expires_at, None, None, False
    )
    assert await stores.count_tokens("grant-1") == 3


async def test_unknown_token_is_rejected(stores: Stores) -> None:
    assert await rotate(stores, lookup_hash("never-issued"), NOW, 5, never) == Rejected()


async def test_expired_token_is_rejected(stores: Stores) -> None:
    _, t0 = await issued(stores, expires_at=NOW + 10)
    assert await rotate(stores, t0, NOW + 10, 5, never) == Rejected()
    assert await rotate(stores, t0, NOW + 11, 5, never) == Rejected()
    assert await stores.count_tokens("grant-1") == 1


async def test_refusing_successor_factory_writes_nothing(stores: Stores) -> None:
    _, t0 = await issued(stores)
    with pytest.raises(LookupError):
        await rotate(stores, t0, NOW + 1, 5, refuse)
    assert await stores.count_tokens("grant-1") == 1
    # Still live: neither retired nor revoked.
    assert isinstance(await rotate(stores, t0, NOW + 2, 5, Factory("rt-1")), Rotated)


async def test_repeat_within_grace_gets_the_same_sealed_response(stores: Stores) -> None:
    _, t0 = await issued(stores)
    winner = Factory("rt-1")
    assert isinstance(await rotate(stores, t0, NOW + 1, 5, winner), Rotated)
    late = Factory("rt-late")
    assert await rotate(stores, t0, NOW + 5.9, 5, late) == Repeated(winner.box)
    assert late.seen == []
    assert await stores.count_tokens("grant-1") == 2


async def test_thirty_concurrent_rotations_create_one_successor(stores: Stores) -> None:
    factories, outcomes = await racing_rotations(stores, grace=5)

    winners = [i for i, o in enumerate(outcomes) if isinstance(o, Rotated)]
    assert len(winners) == 1
    winner = factories[winners[0]]
    repeats = [o for o in outcomes if isinstance(o, Repeated)]
    assert len(repeats) == 29
    assert all(o.sealed_response == winner.box for o in repeats)
    assert await stores.count_tokens("grant-1") == 2

    # Only the winner's successor was stored.
    loser = factories[(winners[0] + 1) % 30]
    assert await rotate(stores, loser.token_hash, NOW + 2, 5, never) == Rejected()
    assert isinstance(await rotate(stores, winner.token_hash, NOW + 2, 5, Factory("n")), Rotated)


async def test_the_store_lets_exactly_one_of_thirty_racing_rotations_through(
    stores: Stores,
) -> None:
    """The protocol's own guarantee, without the grant's decision around it: each racer
    brings its own successor, one atomic step admits exactly one."""
    _, t0 = await issued(stores)
    successors = [Factory(f"rt-succ-{i}").successor() for i in range(30)]
    await stores.warm(30)
    won = await asyncio.gather(*(stores.grants.rotate(t0, s, NOW + 1) for s in successors))

    assert won.count(True) == 1
    winner = successors[won.index(True)]
    assert await stores.count_tokens("grant-1") == 2
    state = await stores.grants.inspect(t0)
    assert state is not None
    assert (state.retired_at, state.successor_box) == (NOW + 1, winner.sealed_response)
    # Retired now: another rotation of it writes nothing.
    assert await stores.grants.rotate(t0, Factory("late").successor(), NOW + 2) is False
    assert await stores.count_tokens("grant-1") == 2


async def test_the_store_refuses_to_rotate_a_dead_token(stores: Stores) -> None:
    grant, t0 = await issued(stores, expires_at=NOW + 10)
    successor = Factory("rt-1").successor
    assert await stores.grants.rotate(lookup_hash("unknown"), successor(), NOW) is False
    assert await stores.grants.rotate(t0, successor(), NOW + 10) is False
    await stores.grants.revoke_grant(grant.grant_id, NOW)
    assert await stores.grants.rotate(t0, successor(), NOW + 1) is False
    assert await stores.count_tokens(grant.grant_id) == 1


async def test_thirty_concurrent_rotations_without_grace_let_one_succeed(stores: Stores) -> None:
    factories, outcomes = await racing_rotations(stores, grace=0)

    winners = [i for i, o in enumerate(outcomes) if isinstance(o, Rotated)]
    assert len(winners) == 1
    losers = [o for o in outcomes if not isinstance(o, Rotated)]
    assert len(losers) == 29
    assert all(isinstance(o, Rejected) for o in losers)
    # A loser's presentation is reuse: it revokes the family (later losers then merely find it
    # revoked), so the winner's successor is dead too.
    assert Rejected(reused=True) in losers
    winner = factories[winners[0]]
    assert await rotate(stores, winner.token_hash, NOW + 2, 0, never) == Rejected()


async def test_reuse_after_grace_revokes_the_whole_family(stores: Stores) -> None:
    _, t0 = await issued(stores)
    t1 = Factory("rt-1")
    assert isinstance(await rotate(stores, t0, NOW + 1, 5, t1), Rotated)
    t2 = Factory("rt-2")
    assert isinstance(await rotate(stores, t1.token_hash, NOW + 2, 5, t2), Rotated)

    # t0 presented again long after its rotation: reuse.
    assert await rotate(stores, t0, NOW + 6, 5, never) == Rejected(reused=True)
    # The newest token of the family is dead too, and so is every older one.
    assert await rotate(stores, t2.token_hash, NOW + 7, 5, never) == Rejected()
    assert await rotate(stores, t1.token_hash, NOW + 7, 5, never) == Rejected()
    # Repeats of the revoked token stay rejected (no grace after revocation).
    assert await rotate(stores, t0, NOW + 7, 5, never) == Rejected()


async def test_repeat_at_exactly_grace_is_reuse(stores: Stores) -> None:
    _, t0 = await issued(stores)
    assert isinstance(await rotate(stores, t0, NOW + 1, 5, Factory("rt-1")), Rotated)
    assert await rotate(stores, t0, NOW + 6, 5, never) == Rejected(reused=True)


async def test_zero_grace_sequential_repeat_is_reuse(stores: Stores) -> None:
    _, t0 = await issued(stores)
    t1 = Factory("rt-1")
    assert isinstance(await rotate(stores, t0, NOW + 1, 0, t1), Rotated)
    assert await rotate(stores, t0, NOW + 1, 0, never) == Rejected(reused=True)
    assert await rotate(stores, t1.token_hash, NOW + 1, 0, never) == Rejected()


# --------------------------------------------------------------------------- revoke


async def test_revoke_grant_kills_every_token_and_is_idempotent(stores: Stores) -> None:
    _, t0 = await issued(stores)
    t1 = Factory("rt-1")
    assert isinstance(await rotate(stores, t0, NOW + 1, 5, t1), Rotated)

    await stores.grants.revoke_grant("grant-1", NOW + 2)
    await stores.grants.revoke_grant("grant-1", NOW + 3)

    assert await rotate(stores, t1.token_hash, NOW + 4, 5, never) == Rejected()
    # Even inside the grace window a revoked family yields nothing.
    assert await rotate(stores, t0, NOW + 2.5, 5, never) == Rejected()


async def test_revoke_unknown_grant_twice_is_fine(stores: Stores) -> None:
    await stores.grants.revoke_grant("grant-ghost", NOW)
    await stores.grants.revoke_grant("grant-ghost", NOW + 1)
    assert await stores.count_tokens("grant-ghost") == 0


async def test_revocation_leaves_other_families_alone(stores: Stores) -> None:
    _, a0 = await issued(stores, "grant-a", "rt-a")
    _, b0 = await issued(stores, "grant-b", "rt-b")
    await stores.grants.revoke_grant("grant-a", NOW + 1)
    assert await rotate(stores, a0, NOW + 2, 5, never) == Rejected()
    assert isinstance(await rotate(stores, b0, NOW + 2, 5, Factory("rt-b1")), Rotated)


async def test_ping(stores: Stores) -> None:
    assert await stores.grants.ping() is None


# --------------------------------------------------------------------------- grant / inspect


async def test_grant_is_readable_until_revoked(stores: Stores) -> None:
    grant, _ = await issued(stores)
    assert await stores.grants.grant("grant-1") == grant
    assert await stores.grants.grant("unknown") is None
    await stores.grants.revoke_grant("grant-1", NOW + 1)
    assert await stores.grants.grant("grant-1") is None


async def test_issue_without_refresh_token_keeps_the_grant(stores: Stores) -> None:
    await stores.clients.add(
        Client("client-1", "App", "client_secret_basic", frozenset({"authorization_code"}))
    )
    grant = Grant("grant-2", "client-1", "user-1", "openid", int(NOW), claims={"name": "A"})
    assert await stores.grants.issue(grant, None, NOW + TTL, NOW) is True
    assert await stores.grants.grant("grant-2") == grant
    assert await stores.count_tokens("grant-2") == 0


async def test_inspect_follows_the_token_through_its_life(stores: Stores) -> None:
    grant, token_hash = await issued(stores)
    state = await stores.grants.inspect(token_hash)
    assert state is not None and state.grant == grant and state.retired_at is None
    assert state.expires_at == NOW + TTL and not state.revoked
    factory = Factory("rt-1")
    assert isinstance(await rotate(stores, token_hash, NOW + 1, 5, factory), Rotated)
    retired = await stores.grants.inspect(token_hash)
    assert retired is not None and retired.retired_at == NOW + 1
    successor = await stores.grants.inspect(factory.token_hash)
    assert successor is not None and successor.retired_at is None
    await stores.grants.revoke_grant(grant.grant_id, NOW + 2)
    revoked = await stores.grants.inspect(factory.token_hash)
    assert revoked is not None and revoked.revoked
    assert await stores.grants.inspect(lookup_hash("never issued")) is None


async def test_of_person_lists_live_grants_oldest_first(stores: Stores) -> None:
    first, _ = await issued(stores, "grant-1", "rt-a")
    later = replace(first, grant_id="grant-2", resources=("https://api.example",))
    assert await stores.grants.issue(later, lookup_hash("rt-b"), NOW + TTL, NOW + 5)
    theirs = replace(first, grant_id="grant-3", sub="user-2")
    assert await stores.grants.issue(theirs, None, NOW + TTL, NOW + 1)
    listed = await stores.grants.of_person("user-1")
    assert listed == [
        GrantSummary("grant-1", "client-1", "openid offline_access", NOW, ()),
        GrantSummary("grant-2", "client-1", "openid offline_access", NOW + 5, later.resources),
    ]
    await stores.grants.revoke_grant("grant-1", NOW + 10)
    assert [g.grant_id for g in await stores.grants.of_person("user-1")] == ["grant-2"]
    assert await stores.grants.of_person("nobody") == []


async def _session_grants(stores: Stores) -> tuple[Grant, Grant, Grant]:
    """In session "sid-1" of user-1: an online grant, then an offline one; a grant of
    another session; each with a refresh token."""
    first, _ = await issued(stores, "grant-1", "rt-a")
    online = replace(first, grant_id="grant-on", scope="openid email", sid="sid-1")
    offline = replace(first, grant_id="grant-off", sid="sid-1")
    other = replace(first, grant_id="grant-other", scope="openid", sid="sid-2")
    for at, (grant, token) in enumerate(
        ((online, "rt-on"), (offline, "rt-off"), (other, "rt-other")), start=1
    ):
        assert await stores.grants.issue(grant, lookup_hash(token), NOW + TTL, NOW + at)
    return online, offline, other


async def test_ending_a_session_revokes_its_grants_without_offline_access(
    stores: Stores,
) -> None:
    _, offline, other = await _session_grants(stores)
    ended = await stores.grants.end_session("user-1", "sid-1", NOW + 10)
    assert ended == [
        SessionGrant("grant-on", "client-1", True),
        SessionGrant("grant-off", "client-1", False),
    ]
    assert await stores.grants.grant("grant-on") is None
    state = await stores.grants.inspect(lookup_hash("rt-on"))
    assert state is not None and state.revoked  # its refresh tokens fail from now on
    succ = Successor(lookup_hash("rt-on-2"), NOW + TTL, b"box")
    assert not await stores.grants.rotate(lookup_hash("rt-on"), succ, NOW + 11)
    assert await stores.grants.grant("grant-off") == offline  # offline access outlives it
    assert await stores.grants.grant("grant-other") == other  # another session's grant
    # again: only the offline grant is still the session's
    assert await stores.grants.end_session("user-1", "sid-1", NOW + 12) == [
        SessionGrant("grant-off", "client-1", False)
    ]


async def test_ending_a_session_names_only_that_persons_session(stores: Stores) -> None:
    await _session_grants(stores)
    assert await stores.grants.end_session("user-2", "sid-1", NOW + 10) == []
    assert await stores.grants.end_session("user-1", "sid-unknown", NOW + 10) == []
    assert await stores.grants.grant("grant-on") is not None


async def test_a_session_ended_twice_at_once_revokes_each_grant_once(stores: Stores) -> None:
    """Two sign-outs racing (two tabs): each online grant is reported ended by exactly one."""
    await _session_grants(stores)
    results = await asyncio.gather(
        *(stores.grants.end_session("user-1", "sid-1", NOW + 10) for _ in range(8))
    )
    ended = [g.grant_id for result in results for g in result if g.ended]
    assert ended == ["grant-on"]
    assert all(SessionGrant("grant-off", "client-1", False) in result for result in results)
