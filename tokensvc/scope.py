"""Scope strings (RFC 6749 §3.3): space-delimited, case-sensitive tokens."""

from __future__ import annotations

import re

from tokensvc.errors import InvalidScope

# OIDC Core §5.4 scopes that describe a person, plus offline_access: meaningless for a machine.
PERSON_SCOPES = frozenset({"openid", "profile", "email", "address", "phone", "offline_access"})
_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def parse(raw: str) -> tuple[str, ...]:
    """Split a scope parameter, dropping repeats but keeping order; reject bad characters."""
    items = raw.split(" ")
    seen: dict[str, None] = {}
    for item in items:
        if not item:
            continue
        if _TOKEN.fullmatch(item) is None:
            raise InvalidScope("The scope contains characters RFC 6749 §3.3 does not allow.")
        seen[item] = None
    return tuple(seen)


def narrow(requested: str | None, allowed: frozenset[str] | tuple[str, ...], default: str) -> str:
    """The scope to grant: `default` when none is requested, else a subset of `allowed`."""
    if requested is None:
        return default
    wanted = parse(requested)
    if not wanted:
        return default
    extra = [s for s in wanted if s not in allowed]
    if extra:
        raise InvalidScope(f"Scope not allowed: {' '.join(extra)}.")
    return " ".join(wanted)
