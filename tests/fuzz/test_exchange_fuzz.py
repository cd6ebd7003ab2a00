"""Token exchange under hostile input (RFC 8693 §2.1): every parameter drawn from valid values,
near misses and garbage — subject and actor tokens (ours, a workload's, mangled, of the wrong
type), token types, resources and audiences (repeated, unknown, not URIs), scopes, requested
token types, and the JSON context parameters of transaction tokens. The answer is a token or a
well-formed OAuth error — never a 5xx (the stack checks its log for tracebacks on the way
out)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import fuzz
from tests.fuzz.expect import token_reply
from tests.fuzz.stack import Stack
from tests.fuzz.strategies import FORM, JSON_VALUES, TEXT, Hostile, rarely, send
from tests.jose import keypair, public_jwks, workload_token
from tokensvc.grants.token_exchange import ACCESS_TOKEN, GRANT_TYPE, JWT, TXN_TOKEN
from tokensvc.models import Credentials
from tokensvc.registration import new_client, new_federation, new_resource

RESOURCE = "https://fuzz-api.example"
K8S = "https://kubernetes.fuzz.example"
ERRORS = (None, "invalid_request", "invalid_target", "invalid_scope", "slow_down")


def _encoded(pairs: list[tuple[str, str]]) -> bytes:
    return "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in pairs).encode()


async def _world(stack: Stack) -> dict[str, Any]:
    """An exchanging client, a resource, a person's token, a machine token and a workload's."""
    h = stack.harness
    await h.stores.resources.add(new_resource(identifier=RESOURCE, scopes=["fuzz:read"]))
    key = keypair(kid="fuzz-sa")
    await h.stores.federations.add(new_federation(issuer=K8S, jwks=public_jwks(key)))
    workload, _ = new_client(
        name="fuzz workload",
        grant_types=["client_credentials"],
        scope_list=["fuzz:read"],
        auth_method="federated_jwt",
        credentials=Credentials(federated_issuer=K8S, federated_subject="system:sa:*"),
    )
    assert await h.stores.clients.add(workload)
    exchanger, secret = await h.client(
        name="fuzz exchanger",
        grant_types=[GRANT_TYPE, "client_credentials"],
        scope_list=["openid fuzz:read api:read"],
        resources=(RESOURCE,),
    )
    web, web_secret = await h.client(scope_list=["openid fuzz:read"])
    code, verifier = await h.mint_code(web, scope="openid fuzz:read")
    person = (await h.exchange(web, web_secret, code, verifier)).body["access_token"]
    machine = (await h.token(exchanger, secret, grant_type="client_credentials")).body
    return {
        "client": exchanger,
        "secret": secret,
        "tokens": {
            ACCESS_TOKEN: (person, machine["access_token"]),
            JWT: (workload_token(key, K8S, "system:sa:app"),),
        },
    }


def test_hostile_token_exchanges_get_oauth_errors_never_a_server_error(
    token_stack: Stack,
) -> None:
    stack, h = token_stack, token_stack.harness
    world = stack.run(_world(stack))
    client, secret = world["client"], world["secret"]
    tokens: dict[str, tuple[str, ...]] = world["tokens"]
    every = [t for group in tokens.values() for t in group]
    types = (ACCESS_TOKEN, JWT, TXN_TOKEN, "urn:ietf:params:oauth:token-type:id_token", "")

    def token_of(draw: st.DrawFn) -> str:
        token = draw(st.sampled_from(every))
        if rarely(draw, 4):  # mangled: a character flipped, cut, or garbage
            how = draw(st.sampled_from(("flip", "cut", "garbage")))
            if how == "flip":
                at = draw(st.integers(0, len(token) - 1))
                token = token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]
            elif how == "cut":
                token = token[: draw(st.integers(0, len(token) - 1))]
            else:
                token = draw(TEXT)
        return token

    @st.composite
    def requests(draw: st.DrawFn) -> Hostile:
        pairs = [("grant_type", GRANT_TYPE)]
        if not rarely(draw, 10):
            pairs.append(("subject_token", token_of(draw)))
        if not rarely(draw, 10):
            pairs.append(("subject_token_type", draw(st.sampled_from(types[:2] * 3 + types))))
        if rarely(draw, 4):
            pairs.append(("actor_token", token_of(draw)))
            if not rarely(draw, 5):
                pairs.append(("actor_token_type", draw(st.sampled_from(types))))
        for name in ("resource", "audience"):
            for _ in range(draw(st.integers(0, 2))):
                pairs.append(
                    (
                        name,
                        draw(
                            st.sampled_from((RESOURCE, h.settings.issuer, "x", RESOURCE + "#f"))
                            | TEXT
                        ),
                    )
                )
        if rarely(draw, 2):
            pairs.append(
                ("scope", draw(st.sampled_from(("fuzz:read", "openid", "api:read", "x")) | TEXT))
            )
        if rarely(draw, 3):
            pairs.append(
                ("requested_token_type", draw(st.sampled_from((TXN_TOKEN, ACCESS_TOKEN, JWT))))
            )
        for name in ("request_context", "request_details"):
            if rarely(draw, 4):
                value = draw(JSON_VALUES)
                text = orjson.dumps(value).decode() if not rarely(draw, 3) else draw(TEXT)
                pairs.append((name, text))
        basic = base64.b64encode(f"{client.client_id}:{secret}".encode()).decode()
        headers = (("Content-Type", FORM), ("Authorization", f"Basic {basic}"))
        return Hostile("POST", "/token", headers, _encoded(pairs))

    outcomes: set[str | None] = set()

    @fuzz(examples=150)
    @given(request=requests())
    def probe(request: Hostile) -> None:
        reply = stack.run(send(h.http, h.public_url, request))
        error = token_reply(reply)
        assert error in ERRORS, reply
        outcomes.add(error)

    probe()
    # Both sides reached: exchanges that succeeded and ones refused.
    assert None in outcomes and "invalid_request" in outcomes, outcomes
