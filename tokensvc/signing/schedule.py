"""When each signing key is published, signs and retires: rotation without downtime.

Every key of the private JWKS file carries its schedule as extra members (RFC 7517 §4 lets a
JWK carry members other readers ignore), in epoch seconds:

* `publish_at` — from then on the key is in `/jwks.json` (absent: since forever);
* `sign_at` — from then on it may sign (absent: it never signs, it is only published);
* `retire_at` — from then on it is neither published nor used (absent: never).

At time t the published keys are those with `publish_at <= t < retire_at`, and the signing key
is the published key with the latest `sign_at <= t`. Before the first `sign_at` of a file has
come (a host whose clock is behind the one that wrote the file), the earliest signer signs:
nothing precedes it. The signing key is always published, so `/jwks.json` is never empty.

A rotation (`rotate`) adds a key published now that signs `lead` seconds later — one JWKS cache
lifetime (`JWKS_MAX_AGE`, also the `Cache-Control: max-age` of `/jwks.json`), so every relying
party that honours the cache header holds the new key before the first token it signs. The key
it replaces stays published until every token it signed has expired, plus that cache lifetime.

Files written before schedules existed mark one key `"active": true`: that key signs, and every
key is published, since forever.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise

JWKS_MAX_AGE = 300  # seconds: /jwks.json's Cache-Control max-age and the default rotation lead
NEVER = math.inf
SINCE_FOREVER = 0.0  # `publish_at` / `sign_at` of a key that has always been there

MEMBERS = ("publish_at", "sign_at", "retire_at")


@dataclass(frozen=True, slots=True)
class Window:
    """The schedule of one key."""

    kid: str
    publish_at: float = SINCE_FOREVER
    sign_at: float | None = None
    retire_at: float = NEVER

    def published(self, t: float) -> bool:
        return self.publish_at <= t < self.retire_at

    def members(self) -> dict[str, int | float]:
        """The JSON members that write this schedule back into the key file."""
        out: dict[str, int | float] = {"publish_at": _number(self.publish_at)}
        if self.sign_at is not None:
            out["sign_at"] = _number(self.sign_at)
        if self.retire_at != NEVER:
            out["retire_at"] = _number(self.retire_at)
        return out


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


@dataclass(frozen=True, slots=True)
class Phase:
    """What holds between two transitions of a schedule: on [since, until) nothing changes."""

    signing: str
    published: tuple[str, ...]  # in file order; always includes `signing`
    since: float
    until: float


class Schedule:
    """A validated set of windows. Raises `ValueError` naming the key at fault."""

    __slots__ = ("_boundaries", "_signers", "windows")

    def __init__(self, windows: Iterable[Window]) -> None:
        self.windows = tuple(windows)
        for w in self.windows:
            if w.retire_at <= w.publish_at:
                raise ValueError(f"key {w.kid}: retire_at must be after publish_at")
            if w.sign_at is not None:
                if w.sign_at < w.publish_at:
                    raise ValueError(f"key {w.kid}: sign_at must not be before publish_at")
                if w.retire_at <= w.sign_at:
                    raise ValueError(f"key {w.kid}: retire_at must be after sign_at")
        signers = sorted(
            (w for w in self.windows if w.sign_at is not None), key=lambda w: w.sign_at or 0.0
        )
        if not signers:
            raise ValueError("no key can sign: one key needs a sign_at")
        for before, after in pairwise(signers):
            if before.sign_at == after.sign_at:
                raise ValueError(f"keys {before.kid} and {after.kid} sign from the same time")
        if signers[-1].retire_at != NEVER:
            raise ValueError(f"key {signers[-1].kid} signs last, so it cannot have a retire_at")
        self._signers = signers
        self._boundaries = sorted(
            {
                t
                for w in self.windows
                for t in (w.publish_at, w.sign_at, w.retire_at)
                if t is not None and math.isfinite(t)
            }
        )

    def phase(self, t: float) -> Phase:
        live = [w for w in self._signers if w.retire_at > t]  # never empty: the last never retires
        due = [w for w in live if (w.sign_at or 0.0) <= t]
        signer = due[-1] if due else live[0]
        published = tuple(w.kid for w in self.windows if w is signer or w.published(t))
        since = max((b for b in self._boundaries if b <= t), default=-math.inf)
        until = min((b for b in self._boundaries if b > t), default=NEVER)
        return Phase(signer.kid, published, since, until)


@dataclass(frozen=True, slots=True)
class Rotation:
    windows: tuple[Window, ...]  # the survivors, changed where needed, then the new key
    new: Window
    retired: dict[str, float]  # kid -> the retire_at this rotation gave it
    pruned: tuple[str, ...]  # kids dropped because their retire_at had passed


def rotate(
    windows: Sequence[Window],
    new_kid: str,
    *,
    now: float,
    lead: int = JWKS_MAX_AGE,
    token_ttl: int,
    retire_after: int | None = None,
) -> Rotation:
    """Add `new_kid`, published at `now` and signing from `now + lead`.

    (Should a key that has already signed have a `sign_at` that late — `--lead 0` within the
    second of the previous rotation — the new key signs one second after it instead.)
    Every other key stops signing by then, so each one still without a `retire_at` gets
    `sign_at + token_ttl + lead` (the last token it can sign has expired, and caches have had
    a cache lifetime to notice), or `sign_at + retire_after` when given. A key that was still
    waiting to sign at or after the new key's `sign_at` never will: the new key supersedes it.
    Keys whose `retire_at` has passed are pruned.
    """
    if lead < 0 or token_ttl < 0 or (retire_after is not None and retire_after < 0):
        raise ValueError("lead, token lifetime and retire-after must not be negative")
    publish_at = float(math.floor(now))
    sign_at = publish_at + lead
    # A key that has signed keeps its turn: the new one comes strictly after it.
    signed = [w.sign_at for w in windows if w.sign_at is not None and w.sign_at <= now]
    sign_at = max([sign_at, *(t + 1 for t in signed)])
    new = Window(new_kid, publish_at=publish_at, sign_at=sign_at)
    retire_at = sign_at + (token_ttl + lead if retire_after is None else retire_after)
    kept: list[Window] = []
    pruned: list[str] = []
    retired: dict[str, float] = {}
    for w in windows:
        if w.retire_at <= now:
            pruned.append(w.kid)
            continue
        if w.sign_at is not None and w.sign_at > now and w.sign_at >= sign_at:
            w = replace(w, sign_at=None)  # it was still waiting: it never signs now
        if w.retire_at == NEVER:
            w = replace(w, retire_at=max(retire_at, w.publish_at + 1))
            retired[w.kid] = w.retire_at
        kept.append(w)
    Schedule([*kept, new])  # what we write must load
    return Rotation((*kept, new), new, retired, tuple(pruned))
