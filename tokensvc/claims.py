"""Which claims about a person a scope releases (OIDC Core §5.4): the one rule.

`claims_for_scope` is applied to the scope of each token as it is issued or presented, after
any narrowing (RFC 6749 §6): by the ID token minter (`signing.tokens`), by `/userinfo`, and,
through `released_claims`, to what a sign-in or the password grant records in a grant.
Claims no scope covers (or that the token's scope does not cover) are never released.
"""

from __future__ import annotations

from typing import Any

from tokensvc.models import User

# OIDC Core §5.4: the claims each scope value requests.
SCOPE_CLAIMS: dict[str, frozenset[str]] = {
    "profile": frozenset(
        {
            "name",
            "family_name",
            "given_name",
            "middle_name",
            "nickname",
            "preferred_username",
            "profile",
            "picture",
            "website",
            "gender",
            "birthdate",
            "zoneinfo",
            "locale",
            "updated_at",
        }
    ),
    "email": frozenset({"email", "email_verified"}),
    "address": frozenset({"address"}),
    "phone": frozenset({"phone_number", "phone_number_verified"}),
}

# The scope that covers each claim (one each).
_SCOPE_OF: dict[str, str] = {c: s for s, claims in SCOPE_CLAIMS.items() for c in claims}


def claims_for_scope(claims: dict[str, Any], scope: str) -> dict[str, Any]:
    """The subset of `claims` that `scope` covers (OIDC Core §5.4). Cheap on the `/token` hot
    path: one pass over the few claims of a grant, nothing built when there are none."""
    if not claims:
        return {}
    granted = scope.split(" ")
    return {k: v for k, v in claims.items() if _SCOPE_OF.get(k) in granted}


def released_claims(user: User, scope: str) -> dict[str, Any]:
    """What a sign-in with `scope` records about `user` in its grant."""
    held: dict[str, Any] = {}
    if user.name:
        held["name"] = user.name
    if user.email:
        held["email"] = user.email
        held["email_verified"] = user.email_verified
    return claims_for_scope(held, scope)
