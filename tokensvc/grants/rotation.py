"""Refresh-token rotation with reuse detection (RFC 9700 §4.14.2, RFC 6749 §6), decided once.

The stores report a token's state (`GrantStore.inspect`) and perform one conditional atomic
step (`GrantStore.rotate`); what a state means is decided here alone, by `decide`, for every
backend. The path runs one way: the grant reads, decides, builds the successor and asks the
store to rotate; the store never calls back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tokensvc.models import Grant, RefreshState, Successor
from tokensvc.storage.protocols import GrantStore


@dataclass(frozen=True, slots=True)
class Live:
    """The token may be rotated now: build its successor and ask the store to rotate."""

    state: RefreshState


@dataclass(frozen=True, slots=True)
class Rotated:
    """The presented token was live and is now retired; the caller's successor is stored."""

    state: RefreshState


@dataclass(frozen=True, slots=True)
class Repeated:
    """The token was rotated less than `grace` seconds ago: answer with that rotation's sealed
    response (the same successor), creating nothing new."""

    sealed_response: bytes
    # The token's grant, for checks the repeat must pass too (its binding, RFC 8705 §4).
    grant: Grant | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Rejected:
    """Unknown, expired or revoked token, or reuse after the grace window (`reused=True`: the
    whole family is revoked, newest token included)."""

    reused: bool = False


Decision = Live | Repeated | Rejected
Outcome = Rotated | Repeated | Rejected


def decide(state: RefreshState | None, now: float, grace: float) -> Decision:
    """What presenting a token in `state` at `now` gets.

    * unknown, expired (at `now`) or of a revoked grant: `Rejected()`;
    * live (never rotated): `Live`;
    * rotated less than `grace` seconds ago, with its sealed successor: `Repeated` — a client
      that lost the response to a network failure or raced itself gets the same answer;
    * rotated longer ago, or with `grace` 0: reuse, `Rejected(reused=True)`; RFC 9700
      §4.14.2 has the server revoke the family, since either the client or an attacker holds
      a stolen token and the server cannot tell which.

    `grace > 0` is tested explicitly: a racing caller whose clock reads slightly before the
    winner's must not get a repeat when repeats are switched off."""
    if state is None or state.revoked or state.expires_at <= now:
        return Rejected()
    if state.retired_at is None:
        return Live(state)
    if grace > 0 and now - state.retired_at < grace and state.successor_box is not None:
        return Repeated(state.successor_box, state.grant)
    return Rejected(reused=True)


async def rotate(
    grants: GrantStore,
    token_hash: bytes,
    now: float,
    grace: float,
    successor: Callable[[RefreshState], Successor | Awaitable[Successor]],
) -> Outcome:
    """Present `token_hash`: read its state, decide, and for a live token build the successor
    (`successor`, plain or a coroutine function, may raise to refuse; nothing is written then)
    and rotate. Of any number of
    racing calls exactly one rotates; the others are decided on the state the winner left
    (`Repeated` within the grace window, reuse otherwise). Reuse revokes the family here."""
    state = await grants.inspect(token_hash)
    decision = decide(state, now, grace)
    if isinstance(decision, Live):
        built = successor(decision.state)
        if not isinstance(built, Successor):
            built = await built
        if await grants.rotate(token_hash, built, now):
            return Rotated(decision.state)
        # Lost a race (or the grant was revoked meanwhile): decide on the row as it is now.
        state = await grants.inspect(token_hash)
        decision = decide(state, now, grace)
        if isinstance(decision, Live):  # the store refused a live token: treat as unknown
            return Rejected()
    if isinstance(decision, Rejected) and decision.reused and state is not None:
        await grants.revoke_grant(state.grant.grant_id, now)
    return decision
