"""What a request presents to authenticate its client, read once and refused when it offers
two methods at once (RFC 6749 §2.3: "MUST NOT use more than one authentication method").

* a `Basic` header: `client_secret_basic` (RFC 6749 §2.3.1);
* `client_assertion_type` + `client_assertion`: an RFC 7523 §2.2 JWT, for `private_key_jwt`
  and `federated_jwt`; `client_id` then optional (taken from the assertion's `iss`);
* `client_secret` in the body: `client_secret_post`;
* a bare `client_id`: `none`, or one of the certificate methods (RFC 8705 §2).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

import orjson

from tokensvc.errors import InvalidClient, InvalidRequest

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION = 8192  # bytes: a workload token with a long chain of claims fits easily

Presentation = Literal["client_secret_basic", "client_secret_post", "client_assertion", "none"]


@dataclass(frozen=True, slots=True)
class Presented:
    client_id: str
    method: Presentation
    basic: bool = False  # the client authenticated in the header (401 names Basic)
    secret: str = ""
    assertion: str | None = None


def presented(authorization: str | None, params: Mapping[str, str]) -> Presented:
    body_id = params.get("client_id")
    body_secret = params.get("client_secret")
    assertion = params.get("client_assertion")
    assertion_type = params.get("client_assertion_type")
    if authorization is not None:
        if authorization[:6].lower() != "basic ":
            raise InvalidClient("Unsupported authorization scheme; use Basic.", basic=True)
        client_id, secret = _basic(authorization)
        if body_secret is not None or assertion is not None:
            raise InvalidRequest("Use only one client authentication method.")
        if body_id is not None and body_id != client_id:
            raise InvalidRequest("client_id in the body differs from the authenticated client.")
        return Presented(client_id, "client_secret_basic", basic=True, secret=secret)
    if assertion is not None or assertion_type is not None:
        if body_secret is not None:
            raise InvalidRequest("Use only one client authentication method.")
        if assertion_type != JWT_BEARER:
            raise InvalidRequest(f"client_assertion_type must be {JWT_BEARER}.")
        if assertion is None:
            raise InvalidRequest("client_assertion is required with client_assertion_type.")
        if len(assertion) > MAX_ASSERTION:
            raise InvalidClient("The client assertion is too large.")
        return Presented(body_id or _issuer(assertion), "client_assertion", assertion=assertion)
    if body_id is None:
        raise InvalidClient("Client authentication is required.")
    if body_secret is not None:
        return Presented(body_id, "client_secret_post", secret=body_secret)
    return Presented(body_id, "none")


def _basic(header: str) -> tuple[str, str]:
    """RFC 6749 §2.3.1: id and secret are form-urlencoded, then joined by ':' and base64'd."""
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        client_id, sep, secret = decoded.partition(":")
        client_id, secret = unquote(client_id, errors="strict"), unquote(secret, errors="strict")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidClient("Malformed Basic authorization header.", basic=True) from None
    # No client_id holds NUL (RFC 6749 A.1), nor can a Postgres text.
    if not sep or not client_id or "\x00" in client_id:
        raise InvalidClient("Malformed Basic authorization header.", basic=True)
    return client_id, secret


def _issuer(assertion: str) -> str:
    """The `iss` of an assertion, unverified: only which client to load (RFC 7523 §3: the
    issuer of a client assertion is the client). Its signature is checked after."""
    parts = assertion.split(".")
    try:
        if len(parts) != 3:
            raise ValueError
        payload = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidClient("Malformed client assertion.") from None
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    if not isinstance(issuer, str) or not issuer or "\x00" in issuer:
        raise InvalidClient("The client assertion names no issuer; send client_id.")
    return issuer
