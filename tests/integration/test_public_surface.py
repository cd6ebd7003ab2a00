"""Discovery, JWKS, health, the request log line, signing algorithms, and hostile input at
/token: every malformed request is a 4xx JSON error, never a 5xx."""

from __future__ import annotations

import base64
import io

import pytest

from tests.harness import Harness
from tokensvc.signing.keyfile import generate_jwks, rotated
from tokensvc.signing.keys import keyset_from_jwks

pytestmark = pytest.mark.asyncio


async def test_discovery_documents(harness: Harness) -> None:
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        reply = await harness.get(path)
        assert reply.status == 200
        meta = reply.body
        issuer = harness.settings.issuer
        assert meta["issuer"] == issuer
        assert meta["token_endpoint"] == issuer + "/token"
        assert meta["jwks_uri"] == issuer + "/jwks.json"
        assert meta["authorization_endpoint"] == harness.settings.login_url + "/authorize"
        assert meta["code_challenge_methods_supported"] == ["S256"]
        assert meta["authorization_response_iss_parameter_supported"] is True
        assert meta["end_session_endpoint"] == harness.settings.login_url + "/logout"
        assert meta["backchannel_logout_supported"] is True
        assert meta["backchannel_logout_session_supported"] is True
        assert set(meta["grant_types_supported"]) == {
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "password",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        }
        assert "ES256" in meta["id_token_signing_alg_values_supported"]


async def test_jwks_publishes_public_keys_only(make_harness, clock) -> None:
    # A rotation at the service's clock: both keys are published (the new one signs later).
    keys = keyset_from_jwks(rotated(generate_jwks("ES256"), "RS256", now=clock()))
    harness = await make_harness(keys=keys)
    reply = await harness.get("/jwks.json")
    assert reply.status == 200
    published = reply.body["keys"]
    assert len(published) == 2
    for key in published:
        assert key["kid"] and key["use"] == "sig" and key["alg"] in ("ES256", "RS256")
        assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys()


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256", "PS256"])
async def test_every_algorithm_verifies(make_harness, alg: str) -> None:
    harness = await make_harness(keys=keyset_from_jwks(generate_jwks(alg)))
    client, secret = await harness.client()
    code, verifier = await harness.mint_code(client)
    body = (await harness.exchange(client, secret, code, verifier)).body
    import warnings

    with warnings.catch_warnings():
        # joserfc flags "EdDSA" as deprecated by RFC 9864; the SPEC asks for it.
        warnings.simplefilter("ignore")
        access = await harness.verify(body["access_token"], typ="at+jwt", sub="user-123")
        ident = await harness.verify(body["id_token"], typ="JWT", aud=client.client_id)
    assert access["client_id"] == client.client_id
    assert ident["at_hash"]


async def test_health_and_readiness(harness: Harness) -> None:
    assert (await harness.get("/healthz")).status == 200
    ready = await harness.get("/readyz")
    assert ready.status == 200
    assert ready.body["stores"] == {"codes": True, "clients": True, "grants": True}


async def test_one_log_line_per_request(harness: Harness, log_sink) -> None:
    client, secret = await harness.client(grant_types=["client_credentials"], scope_list=["a"])
    mark = log_sink.mark()
    await harness.token(client, secret, grant_type="client_credentials")
    await harness.post_token(
        {"grant_type": "client_credentials"}, basic=(client.client_id, "wrong")
    )
    events = [e for e in log_sink.events(mark) if e.get("event") == "request"]
    assert len(events) == 2
    ok, bad = events
    assert ok["method"] == "POST" and ok["path"] == "/token" and ok["status"] == 200
    assert ok["grant_type"] == "client_credentials" and ok["client_id"] == client.client_id
    assert isinstance(ok["duration_ms"], float) and "error" not in ok
    assert bad["status"] == 401 and bad["error"] == "invalid_client"


def _basic(raw: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


MALFORMED = [
    ("json body", b'{"grant_type": "client_credentials"}', {"Content-Type": "application/json"}),
    ("text body", b"grant_type=client_credentials", {"Content-Type": "text/plain"}),
    ("no content type", b"grant_type=client_credentials", {"Content-Type": ""}),
    ("empty body", b"", {}),
    ("two megabytes", b"grant_type=client_credentials&x=" + b"a" * 2_000_000, {}),
    ("duplicated grant_type", b"grant_type=client_credentials&grant_type=password", {}),
    ("duplicated scope", b"grant_type=client_credentials&scope=a&scope=b", {}),
    ("non-utf8 bytes", b"grant_type=client_credentials&scope=\xff\xfe", {}),
    ("non-utf8 escaped", b"grant_type=client_credentials&scope=%ff%fe", {}),
    ("unknown grant", b"grant_type=urn%3Aevil", {}),
    ("no grant", b"scope=a", {}),
    ("garbage", b"&&&===&&", {}),
    ("bad basic base64", b"grant_type=client_credentials", {"Authorization": "Basic !!!"}),
    ("basic without colon", b"grant_type=client_credentials", _basic(b"justanid")),
    ("basic non-utf8", b"grant_type=client_credentials", _basic(b"\xff\xfe:\xfd")),
    ("basic bad escape", b"grant_type=client_credentials", _basic(b"%ZZ:%ff")),
    ("bearer scheme", b"grant_type=client_credentials", {"Authorization": "Bearer abc"}),
    ("huge scope", b"grant_type=client_credentials&scope=" + b"s%20" * 10_000, {}),
    ("control chars", b"grant_type=authorization_code&code=%00%01&redirect_uri=%0a", {}),
    ("refresh garbage", b"grant_type=refresh_token&refresh_token=%00", {}),
]


@pytest.mark.parametrize(("name", "body", "headers"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_requests_get_4xx_json(
    harness: Harness, name: str, body: bytes, headers: dict[str, str]
) -> None:
    client, secret = await harness.client()
    assert secret is not None
    hdrs = {"Content-Type": "application/x-www-form-urlencoded"} | headers
    if "Authorization" not in hdrs and name not in ("empty body",):
        auth = base64.b64encode(f"{client.client_id}:{secret}".encode()).decode()
        hdrs["Authorization"] = "Basic " + auth
    if hdrs["Content-Type"] == "":
        del hdrs["Content-Type"]
    async with harness.http.post(
        harness.public_url + "/token", data=io.BytesIO(body), headers=hdrs
    ) as resp:
        assert 400 <= resp.status < 500, (resp.status, await resp.text())
        payload = await resp.json(content_type=None)
        assert resp.headers["Content-Type"].startswith("application/json")
        assert payload["error"] in {
            "invalid_request",
            "invalid_client",
            "invalid_grant",
            "unsupported_grant_type",
            "invalid_scope",
            "unauthorized_client",
        }
        assert resp.headers["Cache-Control"] == "no-store"


async def test_wrong_method_and_unknown_path_are_json(harness: Harness) -> None:
    async with harness.http.get(harness.public_url + "/token") as resp:
        assert resp.status == 405
        assert (await resp.json())["error"]
    async with harness.http.get(harness.public_url + "/nope") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"] == "not_found"
