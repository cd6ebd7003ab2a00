"""Signing keys: the private JWKS file, its schedule, and the public JWKS (RFC 7517).

joserfc generates, imports and exports keys; signing itself happens in `signing.jws` on the
underlying `cryptography` key, because the generic JOSE path costs several times the signature
on the `/token` hot path.

File format: a JWKS whose keys carry `kid`, `alg`, `use: "sig"` and their schedule
(`publish_at`, `sign_at`, `retire_at`; see `signing.schedule`). Older files mark one key
`"active": true` instead; they are read as that key signing, and all keys published, forever.

`KeySet.at(now)` answers which key signs and which keys are published; its answer is cached
until the schedule's next transition, so the hot path (`signer_at`) costs two float compares.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry

from tokensvc.config import ConfigError
from tokensvc.signing.jws import ALGORITHMS, Signer, signer_for
from tokensvc.signing.schedule import (
    MEMBERS,
    SINCE_FOREVER,
    Phase,
    Schedule,
    Window,
)

log = structlog.get_logger("tokensvc.keys")

_PUBLIC_MEMBERS = ("kty", "crv", "x", "y", "n", "e")
_NOT_JWK = frozenset({*MEMBERS, "active"})


@dataclass(frozen=True, slots=True)
class FileKey:
    """One key of the file: its private JWK (without schedule members) and what is built
    from it once, at load."""

    jwk: dict[str, Any]
    window: Window
    public: dict[str, Any]
    key: Any  # joserfc key, for verification
    signer: Signer


@dataclass(frozen=True, slots=True)
class KeyState:
    """The keys in force on [since, until)."""

    signer: Signer
    public_jwks: dict[str, Any]
    jwks_body: bytes  # public_jwks, serialized once
    verify_keys: dict[str, Any]  # kid -> joserfc key of every published key
    since: float
    until: float


class KeySet:
    """A loaded key file. Immutable but for the cached state of the current phase."""

    __slots__ = ("_state", "keys", "schedule")

    def __init__(self, keys: list[FileKey]) -> None:
        self.keys = tuple(keys)
        self.schedule = Schedule(k.window for k in keys)
        self._state: KeyState | None = None

    def at(self, now: float) -> KeyState:
        state = self._state
        if state is None or not state.since <= now < state.until:
            state = self._state = self._build(self.schedule.phase(now), state)
        return state

    def signer_at(self, now: float) -> Signer:
        """The hot path: the cached signer while `now` stays inside the current phase."""
        state = self._state
        if state is not None and state.since <= now < state.until:
            return state.signer
        return self.at(now).signer

    def _build(self, phase: Phase, previous: KeyState | None) -> KeyState:
        by_kid = {k.window.kid: k for k in self.keys}
        published = [by_kid[kid] for kid in phase.published]
        public = {"keys": [k.public for k in published]}
        signer = by_kid[phase.signing].signer
        if previous is not None and previous.signer.kid != signer.kid:
            log.info(
                "signing key changed",
                kid=signer.kid,
                alg=signer.alg,
                previous_kid=previous.signer.kid,
            )
        return KeyState(
            signer=signer,
            public_jwks=public,
            jwks_body=orjson.dumps(public),
            verify_keys={k.window.kid: k.key for k in published},
            since=phase.since,
            until=phase.until,
        )

    # Views at the wall clock, for callers without a clock of their own.
    @property
    def signer(self) -> Signer:
        return self.at(time.time()).signer

    @property
    def kid(self) -> str:
        return self.signer.kid

    @property
    def public_jwks(self) -> dict[str, Any]:
        return self.at(time.time()).public_jwks

    @property
    def verify_keys(self) -> dict[str, Any]:
        return self.at(time.time()).verify_keys

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(k.window.kid for k in self.keys)


def _time(entry: dict[str, Any], member: str, kid: str) -> float | None:
    value = entry.get(member)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value >= 0)
    ):
        raise ValueError(f"key {kid}: {member} must be epoch seconds (a number >= 0)")
    return float(value)


def _window(entry: dict[str, Any], kid: str) -> Window:
    scheduled = any(m in entry for m in MEMBERS)
    if "active" in entry:
        if scheduled:
            raise ValueError(f"key {kid}: 'active' cannot be combined with {'/'.join(MEMBERS)}")
        if not isinstance(entry["active"], bool):
            raise ValueError(f"key {kid}: 'active' must be true or false")
        return Window(kid, SINCE_FOREVER, SINCE_FOREVER if entry["active"] else None)
    publish_at = _time(entry, "publish_at", kid)
    retire_at = _time(entry, "retire_at", kid)
    return Window(
        kid,
        SINCE_FOREVER if publish_at is None else publish_at,
        _time(entry, "sign_at", kid),
        math.inf if retire_at is None else retire_at,
    )


def keyset_from_jwks(jwks: dict[str, Any]) -> KeySet:
    """Validate a private JWKS and prepare signing and publication. Raises `ValueError`."""
    entries = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError("a JWKS with a non-empty 'keys' list is required")
    if not all(isinstance(k, dict) for k in entries):
        raise ValueError("every entry of 'keys' must be a JSON object")
    if not any(m in k for k in entries for m in MEMBERS):  # a file from before schedules
        active = sum(1 for k in entries if k.get("active") is True)
        if active != 1:
            raise ValueError(f"exactly one key must be marked active, found {active}")
    keys: list[FileKey] = []
    for entry in entries:
        kid, alg = entry.get("kid"), entry.get("alg")
        if not isinstance(kid, str) or not kid or any(k.window.kid == kid for k in keys):
            raise ValueError("every key needs a unique string 'kid'")
        if alg not in ALGORITHMS:
            raise ValueError(f"key {kid}: alg must be one of {', '.join(ALGORITHMS)}")
        jwk = {m: v for m, v in entry.items() if m not in _NOT_JWK}
        try:
            key = JWKRegistry.import_key(jwk)
        except (JoseError, ValueError, TypeError) as exc:
            raise ValueError(f"key {kid}: {exc}") from None
        if not key.is_private:
            raise ValueError(f"key {kid}: a private key is required")
        public = key.as_dict(private=False)
        keys.append(
            FileKey(
                jwk=jwk,
                window=_window(entry, kid),
                public={m: public[m] for m in _PUBLIC_MEMBERS if m in public}
                | {"kid": kid, "alg": alg, "use": "sig"},
                key=key,
                signer=signer_for(alg, kid, key.private_key),
            )
        )
    return KeySet(keys)


def parse_keys(raw: bytes) -> KeySet:
    """A key file's bytes to a `KeySet`. Raises `ValueError`."""
    try:
        return keyset_from_jwks(orjson.loads(raw))
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None


def read_keys_file(path: str | os.PathLike[str]) -> tuple[bytes, KeySet]:
    """Load `TOKENSVC_KEYS_FILE` and keep its bytes (the reloader compares them); a bad file
    is a configuration error (one line, exit 2)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"TOKENSVC_KEYS_FILE {path}: {exc.strerror}") from None
    try:
        return raw, parse_keys(raw)
    except ValueError as exc:
        raise ConfigError(f"TOKENSVC_KEYS_FILE {path}: {exc}") from None


def load_keys_file(path: str | os.PathLike[str]) -> KeySet:
    return read_keys_file(path)[1]
