"""Which claims about a person each scope releases (OIDC Core §5.4)."""

from __future__ import annotations

from typing import Any

from tokensvc.models import User


def released_claims(user: User, scope: str) -> dict[str, Any]:
    scopes = scope.split(" ")
    claims: dict[str, Any] = {}
    if "profile" in scopes and user.name:
        claims["name"] = user.name
    if "email" in scopes and user.email:
        claims["email"] = user.email
        claims["email_verified"] = user.email_verified
    return claims


# OIDC Core §5.4: the claims each scope makes available at /userinfo.
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


def claims_for_scope(claims: dict[str, Any], scope: str) -> dict[str, Any]:
    """The subset of released `claims` that `scope` (possibly narrowed since) still covers."""
    allowed = frozenset().union(*(SCOPE_CLAIMS.get(s, frozenset()) for s in scope.split(" ")))
    return {k: v for k, v in claims.items() if k in allowed}
