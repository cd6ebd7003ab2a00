"""Client assertions under hostile input (RFC 7523 §3): JWT-shaped garbage, valid assertions
with one part broken (header, claims, signature), claims of every wrong type, and every
`client_assertion_type`, for a `private_key_jwt` and a `federated_jwt` client. The answer is
tokens for a valid assertion and a well-formed `invalid_client` / `invalid_request`
otherwise — never a 5xx (the stack checks its log for tracebacks on the way out)."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import ECKey

from tests.fuzz.conftest import fuzz
from tests.fuzz.expect import token_reply
from tests.fuzz.stack import Stack
from tests.fuzz.strategies import FORM, JSON_VALUES, TEXT, Hostile, rarely, send
from tokensvc.clientauth.presented import JWT_BEARER
from tokensvc.models import Client, Credentials
from tokensvc.registration import new_client, new_federation

FEDERATION = "https://kubernetes.default.svc"
CLAIMS = ("iss", "sub", "aud", "exp", "nbf", "iat", "jti")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@st.composite
def assertions(draw: st.DrawFn, key: ECKey, good: dict[str, Any]) -> str:
    """A valid assertion, or one with a part broken, or garbage."""
    claims = dict(good, jti=uuid.uuid4().hex)
    how = draw(st.sampled_from(("valid", "claims", "header", "signature", "garbage", "raw")))
    if how == "claims":  # one claim of a wrong value or type, or gone
        name = draw(st.sampled_from(CLAIMS))
        if rarely(draw, 3):
            claims.pop(name, None)
        else:
            claims[name] = draw(JSON_VALUES)
    signed = jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)
    head, body, signature = signed.split(".")
    if how == "header":
        header = draw(
            st.sampled_from(
                (
                    {"alg": "none"},
                    {"alg": "HS256", "kid": key.kid},
                    {"alg": "ES256", "kid": "unknown"},
                    {"alg": "RS256", "kid": key.kid},
                    {"alg": ["ES256"]},
                    {},
                )
            )
        )
        head = _b64(orjson.dumps(header))
    elif how == "signature":
        signature = draw(st.sampled_from(("", "AAAA", signature[::-1], signature + "A")))
    elif how == "garbage":
        return draw(TEXT)
    elif how == "raw":
        return draw(st.sampled_from((head, f"{head}.{body}", "..", "a.b.c.d", "%%.%%.%%")))
    return f"{head}.{body}.{signature}"


async def _register(stack: Stack, method: str, credentials: Credentials) -> Client:
    client, _ = new_client(
        name=f"fuzz {method}",
        grant_types=["client_credentials"],
        auth_method=method,
        credentials=credentials,
    )
    assert await stack.harness.stores.clients.add(client)
    return client


def test_hostile_client_assertions_get_oauth_errors_never_a_server_error(
    token_stack: Stack,
) -> None:
    stack, h = token_stack, token_stack.harness
    own, issuer = ECKey.generate_key("P-256", private=True), ECKey.generate_key("P-256")
    own.ensure_kid()
    issuer.ensure_kid()
    jwks = {"keys": [own.as_dict(private=False)]}
    pkjwt = stack.run(_register(stack, "private_key_jwt", Credentials(jwks=jwks)))
    stack.run(
        h.stores.federations.add(
            new_federation(issuer=FEDERATION, jwks={"keys": [issuer.as_dict(private=False)]})
        )
    )
    federated = stack.run(
        _register(
            stack,
            "federated_jwt",
            Credentials(federated_issuer=FEDERATION, federated_subject="system:sa:*"),
        )
    )
    now = int(time.time())
    good = {
        pkjwt.client_id: (own, {"iss": pkjwt.client_id, "sub": pkjwt.client_id}),
        federated.client_id: (issuer, {"iss": FEDERATION, "sub": "system:sa:app"}),
    }

    @st.composite
    def requests(draw: st.DrawFn) -> Hostile:
        client_id = draw(st.sampled_from(sorted(good)))
        key, claims = good[client_id]
        base = {**claims, "aud": h.settings.issuer, "exp": now + 300}
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": draw(st.sampled_from((JWT_BEARER,) * 4 + ("x", ""))),
            "client_assertion": draw(assertions(key, base)),
        }
        if client_id == federated.client_id or rarely(draw, 3):
            form["client_id"] = draw(st.sampled_from((client_id, *sorted(good), "nobody")))
        body = "&".join(f"{k}={v}" for k, v in form.items()).encode("utf-8", "surrogatepass")
        return Hostile("POST", "/token", (("Content-Type", FORM),), body)

    outcomes: set[str | None] = set()

    @fuzz(examples=150)
    @given(request=requests())
    def probe(request: Hostile) -> None:
        reply = stack.run(send(h.http, h.public_url, request))
        error = token_reply(reply)
        assert error in (None, "invalid_client", "invalid_request", "slow_down"), reply
        outcomes.add(error)

    probe()
    # The fuzz reached both sides: valid assertions got tokens, broken ones were refused.
    assert None in outcomes and "invalid_client" in outcomes, outcomes
