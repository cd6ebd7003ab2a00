"""Grant types by their `grant_type` string (RFC 6749 §4, §6)."""

from __future__ import annotations

from tokensvc.grants import (
    authorization_code,
    client_credentials,
    password,
    refresh_token,
    token_exchange,
)
from tokensvc.grants.common import GrantType

REGISTRY: dict[str, GrantType] = {
    g.grant_type: g
    for g in (
        authorization_code.GRANT,
        refresh_token.GRANT,
        client_credentials.GRANT,
        password.GRANT,
        token_exchange.GRANT,
    )
}
