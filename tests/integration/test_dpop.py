"""DPoP (RFC 9449) end to end, over memory and real Redis + Postgres: proofs at /token for
every grant, replay across replicas, server nonces shared by replicas, key-bound refresh
tokens and codes, `--dpop-bound` clients, and the resource side (/userinfo, /introspect)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.harness import Harness
from tests.integration.conftest import ServiceFactory
from tests.jose import dpop_proof, jwk_thumbprint, keypair
from tokensvc.dpopproof import token_hash
from tokensvc.models import Client

SHARED = {"internal_token": "internal-test-token-0123456789", "dpop_nonce": True}


@pytest.fixture
async def harness(make_harness: ServiceFactory) -> Harness:
    h: Harness = await make_harness()
    return h


def token_url(h: Harness) -> str:
    return h.settings.issuer + "/token"


async def cc(h: Harness, client: Client, secret: str | None, proof: str | None, **more: str):
    assert secret is not None
    headers = {"DPoP": proof} if proof is not None else {}
    form = {"grant_type": "client_credentials", **more}
    return await h.post_token(form, basic=(client.client_id, secret), headers=headers)


async def machine(h: Harness, **kwargs: Any) -> tuple[Client, str | None]:
    return await h.client(grant_types=["client_credentials"], **kwargs)


async def test_a_proof_binds_the_access_token_to_the_key(harness: Harness) -> None:
    client, secret = await machine(harness)
    key = keypair()
    reply = await cc(harness, client, secret, dpop_proof(key, token_url(harness)))
    assert reply.status == 200, reply.body
    assert reply.body["token_type"] == "DPoP"
    claims = await harness.verify(reply.body["access_token"], typ="at+jwt")
    assert claims["cnf"] == {"jkt": jwk_thumbprint(key)}
    plain = await cc(harness, client, secret, None)
    assert plain.body["token_type"] == "Bearer"
    assert "cnf" not in await harness.verify(plain.body["access_token"], typ="at+jwt")


async def test_htu_is_the_issuers_url_not_the_host_the_request_reached(harness: Harness) -> None:
    client, secret = await machine(harness)
    assert harness.public_url != harness.settings.issuer  # the harness listens elsewhere
    reached = dpop_proof(keypair(), harness.public_url + "/token")
    reply = await cc(harness, client, secret, reached)
    assert reply.status == 400 and reply.body["error"] == "invalid_dpop_proof"


@pytest.mark.parametrize(
    "broken",
    ["htm", "htu", "old", "future", "private", "hmac", "two headers", "garbage", "typ"],
)
async def test_bad_proofs_are_invalid_dpop_proof(harness: Harness, broken: str) -> None:
    client, secret = await machine(harness)
    key, url = keypair(), token_url(harness)
    now = int(time.time())
    proofs = {
        "htm": lambda: dpop_proof(key, url, htm="GET"),
        "htu": lambda: dpop_proof(key, url + "x"),
        "old": lambda: dpop_proof(key, url, iat=now - 300),
        "future": lambda: dpop_proof(key, url, iat=now + 300),
        "private": lambda: dpop_proof(key, url, header={"jwk": key.as_dict(private=True)}),
        "hmac": lambda: dpop_proof(key, url).split(".")[0] + ".e30.c2ln",
        "garbage": lambda: "not a proof",
        "typ": lambda: dpop_proof(key, url, header={"typ": "JWT"}),
    }
    if broken == "two headers":
        assert secret is not None
        reply = await harness.post_token(
            [("grant_type", "client_credentials")],
            basic=(client.client_id, secret),
            headers=[("DPoP", dpop_proof(key, url)), ("DPoP", dpop_proof(key, url))],
        )
    else:
        reply = await cc(harness, client, secret, proofs[broken]())
    assert reply.status == 400 and reply.body["error"] == "invalid_dpop_proof", reply.body


async def test_a_proof_is_accepted_once_on_every_replica(make_harness: ServiceFactory) -> None:
    one, two = await make_harness(), await make_harness()
    client, secret = await machine(one)
    proof = dpop_proof(keypair(), token_url(one))
    assert (await cc(one, client, secret, proof)).status == 200
    again = await cc(two, client, secret, proof)
    assert again.status == 400 and again.body["error"] == "invalid_dpop_proof"
    assert "used before" in again.body["error_description"]


async def test_a_dpop_bound_client_must_send_a_proof(harness: Harness) -> None:
    client, secret = await machine(harness, dpop_bound=True)
    refused = await cc(harness, client, secret, None)
    assert refused.status == 400 and refused.body["error"] == "invalid_request"
    assert (
        await cc(harness, client, secret, dpop_proof(keypair(), token_url(harness)))
    ).status == 200


async def test_server_nonces_round_trip_across_replicas(make_harness: ServiceFactory) -> None:
    one, two = await make_harness(**SHARED), await make_harness(**SHARED)
    client, secret = await machine(one)
    key = keypair()
    first = await cc(one, client, secret, dpop_proof(key, token_url(one)))
    assert first.status == 400 and first.body["error"] == "use_dpop_nonce"
    nonce = first.headers["DPoP-Nonce"]
    stale = await cc(two, client, secret, dpop_proof(key, token_url(one), nonce="made-up"))
    assert stale.status == 400 and stale.body["error"] == "use_dpop_nonce"
    ok = await cc(two, client, secret, dpop_proof(key, token_url(one), nonce=nonce))
    assert ok.status == 200 and ok.body["token_type"] == "DPoP", ok.body
    assert ok.headers["DPoP-Nonce"]  # every answer carries the next one
    other = await cc(two, client, "wrong-secret", None)
    assert other.status == 401 and other.headers["DPoP-Nonce"]


# ------------------------------------------------------------------ codes and refresh tokens


async def public_client(h: Harness) -> Client:
    client, _ = await h.client(
        public=True,
        grant_types=["authorization_code", "refresh_token"],
        scope_list=["openid offline_access"],
    )
    return client


async def redeem(h: Harness, client: Client, code: str, verifier: str | None, proof: str | None):
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client.redirect_uris[0],
        "client_id": client.client_id,
        "code_verifier": verifier or "",
    }
    return await h.post_token(form, headers={"DPoP": proof} if proof else {})


async def refresh(h: Harness, client: Client, token: str, proof: str | None):
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client.client_id}
    return await h.post_token(form, headers={"DPoP": proof} if proof else {})


async def test_a_public_clients_refresh_token_is_bound_to_the_key(harness: Harness) -> None:
    client, key, url = await public_client(harness), keypair(), token_url(harness)
    code, verifier = await harness.mint_code(client, scope="openid offline_access")
    reply = await redeem(harness, client, code, verifier, dpop_proof(key, url))
    assert reply.status == 200 and reply.body["token_type"] == "DPoP", reply.body
    rt = reply.body["refresh_token"]
    for proof in (None, dpop_proof(keypair(), url)):  # no proof, another key: refused
        refused = await refresh(harness, client, rt, proof)
        assert refused.status == 400 and refused.body["error"] == "invalid_grant"
    renewed = await refresh(harness, client, rt, dpop_proof(key, url))  # not spent above
    assert renewed.status == 200 and renewed.body["token_type"] == "DPoP"
    claims = await harness.verify(renewed.body["access_token"], typ="at+jwt")
    assert claims["cnf"] == {"jkt": jwk_thumbprint(key)}


async def test_dpop_jkt_binds_the_code_to_the_key(harness: Harness) -> None:
    client, key, url = await public_client(harness), keypair(), token_url(harness)
    jkt = jwk_thumbprint(key)
    code, verifier = await harness.mint_code(client, scope="openid", dpop_jkt=jkt)
    refused = await redeem(harness, client, code, verifier, dpop_proof(keypair(), url))
    assert refused.status == 400 and refused.body["error"] == "invalid_grant"
    code, verifier = await harness.mint_code(client, scope="openid", dpop_jkt=jkt)
    assert (await redeem(harness, client, code, verifier, None)).status == 400
    code, verifier = await harness.mint_code(client, scope="openid", dpop_jkt=jkt)
    assert (await redeem(harness, client, code, verifier, dpop_proof(key, url))).status == 200
    bad = await harness.request_code(client, scope="openid", dpop_jkt="not-a-thumbprint")
    assert bad.status == 400 and bad.body["error"] == "invalid_request"


# ------------------------------------------------------------------ the resource side


async def userinfo(h: Harness, authorization: str, proof: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": authorization, **({"DPoP": proof} if proof else {})}
    async with h.http.get(h.public_url + "/userinfo", headers=headers) as resp:
        return resp.status, resp.headers.get("WWW-Authenticate", "")


async def test_userinfo_wants_the_dpop_scheme_and_a_proof_of_the_key(harness: Harness) -> None:
    client, key = await public_client(harness), keypair()
    code, verifier = await harness.mint_code(client, scope="openid")
    reply = await redeem(harness, client, code, verifier, dpop_proof(key, token_url(harness)))
    token = reply.body["access_token"]
    url = harness.settings.issuer + "/userinfo"
    good = dpop_proof(key, url, htm="GET", ath=token_hash(token))
    assert (await userinfo(harness, f"DPoP {token}", good))[0] == 200
    for authorization, proof in (
        (f"Bearer {token}", None),  # a bound token as a bearer token
        (f"DPoP {token}", None),  # no proof
        (f"DPoP {token}", dpop_proof(keypair(), url, htm="GET", ath=token_hash(token))),
        (f"DPoP {token}", dpop_proof(key, url, htm="GET", ath=token_hash("other"))),
        (f"DPoP {token}", dpop_proof(key, url, htm="POST", ath=token_hash(token))),
        (f"DPoP {token}", good),  # replayed
    ):
        status, challenge = await userinfo(harness, authorization, proof)
        assert status == 401 and challenge.startswith("DPoP "), (authorization, proof)
        assert 'error="invalid_token"' in challenge


async def test_introspection_says_dpop_and_the_keys_thumbprint(harness: Harness) -> None:
    client, secret = await machine(harness)
    key = keypair()
    token = (await cc(harness, client, secret, dpop_proof(key, token_url(harness)))).body[
        "access_token"
    ]
    assert secret is not None
    seen = await harness.post_token(
        {"token": token}, basic=(client.client_id, secret), path="/introspect"
    )
    assert seen.body["token_type"] == "DPoP" and seen.body["cnf"] == {"jkt": jwk_thumbprint(key)}


async def test_discovery_lists_the_dpop_algorithms(harness: Harness) -> None:
    metadata = (await harness.get("/.well-known/openid-configuration")).body
    assert set(metadata["dpop_signing_alg_values_supported"]) == {
        "ES256",
        "RS256",
        "PS256",
        "EdDSA",
    }


async def test_dpop_jkt_at_authorize_binds_the_code_through_the_login_front_end(
    harness: Harness, login: Any
) -> None:
    from tokensvc.registration import new_user

    assert await harness.stores.users.add(new_user(username="ada", password="correct horse"))
    client, key, url = await public_client(harness), keypair(), token_url(harness)
    for proof_key, status in ((keypair(), 400), (key, 200)):
        browser, form = await login.authorize(client, scope="openid", dpop_jkt=jwk_thumbprint(key))
        done = await browser.sign_in(form, "ada", "correct horse")
        assert done.status == 302 and "code" in done.query, done.text
        reply = await redeem(
            harness, client, done.query["code"], login.verifiers[-1], dpop_proof(proof_key, url)
        )
        assert reply.status == status, reply.body
    browser, page = await login.authorize(client, scope="openid", dpop_jkt="not a thumbprint")
    assert page.status == 302 and page.query["error"] == "invalid_request"
