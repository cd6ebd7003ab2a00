"""OAuth errors (RFC 6749 §5.2) and the storage failure every backend wraps its driver errors in.

Each error class fixes its wire code and HTTP status. `description` is sent to the client;
`detail` is for the log line only and never leaves the process.
"""

from __future__ import annotations

import math
from typing import ClassVar


class OAuthError(Exception):
    error: ClassVar[str] = "server_error"
    status: ClassVar[int] = 400
    default_description: ClassVar[str] = "The request could not be processed."

    def __init__(self, description: str | None = None, *, detail: str | None = None) -> None:
        self.description = description or self.default_description
        self.detail = detail
        self.headers: dict[str, str] = {}  # sent with the error response (e.g. DPoP-Nonce)
        super().__init__(self.description)


class InvalidRequest(OAuthError):
    error = "invalid_request"
    default_description = "The request is missing a parameter or is otherwise malformed."


class InvalidClient(OAuthError):
    """RFC 6749 §5.2: 401, and `WWW-Authenticate` naming the scheme the client tried."""

    error = "invalid_client"
    status = 401
    default_description = "Client authentication failed."

    def __init__(
        self, description: str | None = None, *, detail: str | None = None, basic: bool = False
    ) -> None:
        super().__init__(description, detail=detail)
        self.basic = basic
        self.client_id: str | None = None  # set when the client exists (logs and metrics)


class InvalidGrant(OAuthError):
    error = "invalid_grant"
    default_description = "The grant is invalid, expired, revoked or was issued to another client."


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"
    default_description = "The client is not allowed to use this grant type."


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"
    default_description = "The grant type is not supported."


class InvalidScope(OAuthError):
    error = "invalid_scope"
    default_description = "The requested scope is invalid or exceeds what the client may ask for."


class InvalidTarget(OAuthError):
    """RFC 8707 §2: a `resource` that is unknown, not the client's, or not granted."""

    error = "invalid_target"
    default_description = "The requested resource is invalid, unknown or not allowed."


class InvalidDpopProof(OAuthError):
    """RFC 9449 §7.1: the DPoP proof is missing where required, malformed or invalid."""

    error = "invalid_dpop_proof"
    default_description = "The DPoP proof is invalid."


class UseDpopNonce(OAuthError):
    """RFC 9449 §8: the proof must carry the server nonce sent in `DPoP-Nonce`."""

    error = "use_dpop_nonce"
    default_description = "The DPoP proof must carry the nonce in the DPoP-Nonce header."

    def __init__(self, nonce: str) -> None:
        super().__init__()
        self.headers["DPoP-Nonce"] = nonce


class TemporarilyUnavailable(OAuthError):
    error = "temporarily_unavailable"
    status = 503
    default_description = "A backing store is unreachable; try again shortly."


class SlowDown(OAuthError):
    """Too many requests: `429` (RFC 6585 §4) with `Retry-After` in whole seconds (>= 1).

    The code is `slow_down`, the one token-endpoint error in the IANA OAuth Extensions Error
    registry that tells a client to back off and try again (RFC 8628 §3.5); RFC 6749 has none.
    Sent for a client over its request rate (`limit="rate"`) and for a client_id locked out
    after repeated `invalid_client` failures (`limit="lockout"`); see `tokensvc.limits`."""

    error = "slow_down"
    status = 429
    default_description = "Too many requests; try again after the Retry-After delay."

    def __init__(
        self,
        retry_after: float,
        description: str | None = None,
        *,
        limit: str,
        client_id: str,
    ) -> None:
        super().__init__(description, detail=f"{limit} limit")
        self.retry_after = max(1, math.ceil(retry_after))
        self.limit = limit
        self.client_id = client_id


class ServerError(OAuthError):
    error = "server_error"
    status = 500
    default_description = "The server encountered an unexpected condition."


class StoreUnavailable(Exception):
    """A backing store did not answer. Raised only by `tokensvc.storage`; maps to 503."""

    def __init__(self, store: str, cause: BaseException | None = None) -> None:
        self.store = store
        super().__init__(f"{store} unavailable: {type(cause).__name__ if cause else 'unknown'}")
