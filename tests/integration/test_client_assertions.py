"""`private_key_jwt` and `federated_jwt` over real HTTP, memory and Redis + Postgres (RFC 7523
§2.2, §3; OIDC Core §9): every rule of the SPEC, keys inline and from a real `jwks_uri` on
loopback (with a rotation, a slow server and a broken one), a Kubernetes-like service-account
issuer and a SPIFFE trust domain, and replay refused across two replicas."""

from __future__ import annotations

import asyncio
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from joserfc import jwt
from joserfc.errors import SecurityWarning

from tests.harness import Harness
from tests.integration.conftest import ServiceFactory
from tests.jose import ISSUER, assertion, keypair, public_jwks, workload_token
from tokensvc.clientauth.presented import JWT_BEARER
from tokensvc.models import Client, Credentials
from tokensvc.registration import new_client, new_federation

pytestmark = pytest.mark.asyncio

K8S = "https://kubernetes.default.svc.cluster.local"
SPIFFE = "https://oidc-discovery.example.org"


def client_claims(client: Client, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": ISSUER + "/token",
        "exp": now + 120,
        "iat": now,
        "jti": uuid.uuid4().hex,
        **changes,
    }


async def register(harness: Harness, method: str, credentials: Credentials) -> Client:
    client, secret = new_client(
        name=method,
        grant_types=["client_credentials"],
        scope_list=["api:read"],
        auth_method=method,
        credentials=credentials,
    )
    assert secret is None
    assert await harness.stores.clients.add(client)
    return client


async def token_with(harness: Harness, signed: str, client_id: str | None = None, **extra: str):
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": signed,
        **extra,
    }
    if client_id is not None:
        form["client_id"] = client_id
    return await harness.post_token(form)


# --------------------------------------------------------------------------- private_key_jwt


async def test_a_client_signs_its_own_assertion_with_each_asymmetric_alg(
    harness: Harness,
) -> None:
    for alg in ("ES256", "ES384", "RS256", "PS256", "EdDSA"):
        key = keypair(alg)
        client = await register(harness, "private_key_jwt", Credentials(jwks=public_jwks(key)))
        reply = await token_with(harness, assertion(key, alg, **client_claims(client)))
        assert reply.status == 200, (alg, reply.body)
        claims = await harness.verify(reply.body["access_token"], typ="at+jwt")
        assert claims["client_id"] == claims["sub"] == client.client_id


async def test_every_rule_of_an_assertion_is_enforced(harness: Harness) -> None:
    """Each case on a client of its own: ten failures would lock one client out."""
    key, other = keypair(), keypair()
    now = int(time.time())
    refused = {
        "iss another client": {"iss": "someone-else"},
        "sub another client": {"sub": "someone-else"},
        "aud another server": {"aud": "https://other.example/token"},
        "aud missing": {"aud": None},
        "expired": {"exp": now - 120},
        "valid too long": {"exp": now + 3600},
        "no exp": {"exp": None},
        "no jti": {"jti": None},
        "not yet valid": {"nbf": now + 600},
    }
    for case, changes in refused.items():
        client = await register(harness, "private_key_jwt", Credentials(jwks=public_jwks(key)))
        signed = assertion(key, **client_claims(client, **changes))
        reply = await token_with(harness, signed, client.client_id)
        assert reply.status == 401 and reply.body["error"] == "invalid_client", case
    client = await register(harness, "private_key_jwt", Credentials(jwks=public_jwks(key)))
    # Signed by a key the client does not hold.
    reply = await token_with(harness, assertion(other, **client_claims(client)))
    assert reply.status == 401 and reply.body["error"] == "invalid_client"
    # The issuer itself is an accepted audience, as an array member too.
    for aud in (ISSUER, [ISSUER, "https://x.example"]):
        reply = await token_with(harness, assertion(key, **client_claims(client, aud=aud)))
        assert reply.status == 200, (aud, reply.body)


async def test_symmetric_and_unsigned_assertions_are_refused(harness: Harness) -> None:
    key = keypair()
    client = await register(harness, "private_key_jwt", Credentials(jwks=public_jwks(key)))
    claims = client_claims(client)
    hmac = jwt.encode({"alg": "HS256"}, claims, jwt_oct_key(), algorithms=["HS256"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        unsigned = jwt.encode({"alg": "none"}, claims, None, algorithms=["none"])
    for signed in (hmac, unsigned, "not.a.jwt", "a.b", "%%%." * 3):
        reply = await token_with(harness, signed, client.client_id)
        assert reply.status == 401 and reply.body["error"] == "invalid_client", signed


def jwt_oct_key() -> Any:
    from joserfc.jwk import OctKey

    return OctKey.import_key("a-shared-secret-of-at-least-32-bytes!!")


async def test_an_assertion_is_accepted_once(harness: Harness) -> None:
    key = keypair()
    client = await register(harness, "private_key_jwt", Credentials(jwks=public_jwks(key)))
    signed = assertion(key, **client_claims(client))
    first = await token_with(harness, signed)
    again = await token_with(harness, signed)
    assert first.status == 200
    assert again.status == 401 and again.body["error"] == "invalid_client"
    # Of several at once, exactly one gets tokens.
    signed = assertion(key, **client_claims(client))
    replies = await asyncio.gather(*(token_with(harness, signed) for _ in range(10)))
    assert sorted(r.status for r in replies) == [200] + [401] * 9


async def test_a_replay_on_another_replica_is_refused(make_harness: ServiceFactory) -> None:
    """Two token-service processes sharing the stores (Redis for the real backend)."""
    one, two = await make_harness(), await make_harness()
    key = keypair()
    client = await register(one, "private_key_jwt", Credentials(jwks=public_jwks(key)))
    signed = assertion(key, **client_claims(client))
    assert (await token_with(one, signed)).status == 200
    replayed = await token_with(two, signed)
    assert replayed.status == 401 and replayed.body["error"] == "invalid_client"


async def test_client_id_in_the_body_must_be_the_assertions_issuer(harness: Harness) -> None:
    key = keypair()
    client = await register(harness, "private_key_jwt", Credentials(jwks=public_jwks(key)))
    other = await register(harness, "private_key_jwt", Credentials(jwks=public_jwks(keypair())))
    signed = assertion(key, **client_claims(client))
    reply = await token_with(harness, signed, other.client_id)
    assert reply.status == 401 and reply.body["error"] == "invalid_client"
    assert (await token_with(harness, signed, client.client_id)).status == 200


async def test_malformed_requests_are_invalid_request(harness: Harness) -> None:
    key = keypair()
    client = await register(harness, "private_key_jwt", Credentials(jwks=public_jwks(key)))
    signed = assertion(key, **client_claims(client))
    cases = [
        {"client_assertion_type": "urn:other", "client_assertion": signed},
        {"client_assertion_type": JWT_BEARER},
        {"client_assertion_type": JWT_BEARER, "client_assertion": signed, "client_secret": "x"},
    ]
    for fields in cases:
        reply = await harness.post_token({"grant_type": "client_credentials", **fields})
        assert reply.status == 400 and reply.body["error"] == "invalid_request", fields


async def test_a_secret_client_cannot_authenticate_with_an_assertion(harness: Harness) -> None:
    client, _ = await harness.client(grant_types=["client_credentials"])
    key = keypair()
    reply = await token_with(harness, assertion(key, **client_claims(client)))
    assert reply.status == 401 and reply.body["error"] == "invalid_client"
    assert "client_secret_basic" in reply.body["error_description"]


async def test_assertions_authenticate_at_introspect_and_revoke(harness: Harness) -> None:
    key = keypair()
    client = await register(harness, "private_key_jwt", Credentials(jwks=public_jwks(key)))
    issued = await token_with(harness, assertion(key, **client_claims(client)))
    access = issued.body["access_token"]
    auth = {"client_assertion_type": JWT_BEARER}
    introspected = await harness.post_token(
        {**auth, "client_assertion": assertion(key, **client_claims(client)), "token": access},
        path="/introspect",
    )
    assert introspected.status == 200 and introspected.body["active"] is True
    revoked = await harness.post_token(
        {**auth, "client_assertion": assertion(key, **client_claims(client)), "token": access},
        path="/revoke",
    )
    assert revoked.status == 200
    unauthenticated = await harness.post_token({"token": access}, path="/introspect")
    assert unauthenticated.status == 401


async def test_discovery_lists_the_assertion_methods_and_algorithms(harness: Harness) -> None:
    meta = (await harness.get("/.well-known/openid-configuration")).body
    for name in ("token", "introspection", "revocation"):
        methods = meta[f"{name}_endpoint_auth_methods_supported"]
        assert {"private_key_jwt", "federated_jwt"} <= set(methods), name
        assert "client_secret_jwt" not in methods
        algs = meta[f"{name}_endpoint_auth_signing_alg_values_supported"]
        assert set(algs) == {"ES256", "ES384", "RS256", "PS256", "EdDSA"}


# --------------------------------------------------------------------------- a real jwks_uri


@dataclass
class KeyServer:
    """A JWKS endpoint on loopback that counts its fetches."""

    keys: list[Any]
    cache_control: str | None = "max-age=300"
    delay: float = 0.0
    status: int = 200
    raw: bytes | None = None  # a body to send instead of the keys
    fetches: int = 0
    url: str = ""
    runner: Any = field(default=None, repr=False)

    async def serve(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
        if self.raw is not None:
            return web.Response(body=self.raw, status=self.status, headers=headers)
        return web.json_response(public_jwks(*self.keys), status=self.status, headers=headers)


@pytest.fixture
async def key_server() -> AsyncIterator[KeyServer]:
    server = KeyServer([keypair(kid="k1")])
    app = web.Application()
    app.router.add_get("/jwks", server.serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url, server.runner = f"http://{host}:{port}/jwks", runner
    yield server
    await runner.cleanup()


async def test_keys_from_a_jwks_uri_are_cached_and_refetched_for_a_new_kid(
    harness: Harness, key_server: KeyServer
) -> None:
    client = await register(harness, "private_key_jwt", Credentials(jwks_uri=key_server.url))
    first = key_server.keys[0]
    for _ in range(3):
        assert (await token_with(harness, assertion(first, **client_claims(client)))).status == 200
    assert key_server.fetches == 1  # cached (max-age=300)
    # The client rotates in a new key: its unknown kid fetches again, at once.
    rotated = keypair(kid="k2")
    key_server.keys = [first, rotated]
    assert (await token_with(harness, assertion(rotated, **client_claims(client)))).status == 200
    assert key_server.fetches == 2
    # Another unknown kid within the minute does not fetch again: refused without a fetch.
    stranger = keypair(kid="k3")
    reply = await token_with(harness, assertion(stranger, **client_claims(client)))
    assert reply.status == 401 and key_server.fetches == 2


async def test_a_slow_jwks_uri_fails_fast_and_stalls_nobody_else(
    harness: Harness, key_server: KeyServer
) -> None:
    key_server.delay = 10.0
    client = await register(harness, "private_key_jwt", Credentials(jwks_uri=key_server.url))
    other, secret = await harness.client(grant_types=["client_credentials"])
    started = time.monotonic()
    slow = asyncio.create_task(
        token_with(harness, assertion(key_server.keys[0], **client_claims(client)))
    )
    await asyncio.sleep(0.1)
    quick = await harness.token(other, secret, grant_type="client_credentials")
    assert quick.status == 200 and time.monotonic() - started < 1.0
    reply = await slow
    assert reply.status == 401 and reply.body["error"] == "invalid_client"
    assert time.monotonic() - started < 5.0


@pytest.mark.parametrize("broken", ["500", "not json", "private key", "no keys"])
async def test_a_broken_jwks_uri_is_invalid_client_not_a_server_error(
    harness: Harness, key_server: KeyServer, broken: str
) -> None:
    client = await register(harness, "private_key_jwt", Credentials(jwks_uri=key_server.url))
    signer = key_server.keys[0]
    if broken == "500":
        key_server.status = 500
    elif broken == "not json":
        key_server.raw = b"<html>oops</html>"
    elif broken == "private key":
        key_server.raw = orjson.dumps({"keys": [signer.as_dict(private=True)]})
    else:
        key_server.keys = []
    reply = await token_with(harness, assertion(signer, **client_claims(client)))
    assert reply.status == 401 and reply.body["error"] == "invalid_client", reply.body


# --------------------------------------------------------------------------- federated_jwt


async def federate(harness: Harness, issuer: str, **keys: Any) -> None:
    assert await harness.stores.federations.add(new_federation(issuer=issuer, **keys))


async def test_a_kubernetes_service_account_token_authenticates_its_workload(
    harness: Harness,
) -> None:
    issuer_key = keypair(kid="sa-key")
    await federate(harness, K8S, jwks=public_jwks(issuer_key))
    client = await register(
        harness,
        "federated_jwt",
        Credentials(federated_issuer=K8S, federated_subject="system:serviceaccount:payments:*"),
    )
    token = workload_token(issuer_key, K8S, "system:serviceaccount:payments:api")
    for _ in range(3):  # the projected token is reused until it expires
        reply = await token_with(harness, token, client.client_id)
        assert reply.status == 200, reply.body
    refused = {
        "another namespace": workload_token(issuer_key, K8S, "system:serviceaccount:other:api"),
        "one segment only": workload_token(issuer_key, K8S, "system:serviceaccount:payments:api:x"),
        "another audience": workload_token(
            issuer_key, K8S, "system:serviceaccount:payments:api", aud=["https://elsewhere"]
        ),
        "expired": workload_token(
            issuer_key, K8S, "system:serviceaccount:payments:api", exp=int(time.time()) - 60
        ),
        "another issuer's key": workload_token(
            keypair(kid="sa-key"), K8S, "system:serviceaccount:payments:api"
        ),
        "claims another iss": workload_token(
            issuer_key, "https://rogue.example", "system:serviceaccount:payments:api"
        ),
    }
    for case, bad in refused.items():
        reply = await token_with(harness, bad, client.client_id)
        assert reply.status == 401 and reply.body["error"] == "invalid_client", case


async def test_a_spiffe_jwt_svid_authenticates_through_a_discovery_jwks_uri(
    harness: Harness, key_server: KeyServer
) -> None:
    await federate(harness, SPIFFE, jwks_uri=key_server.url)
    client = await register(
        harness,
        "federated_jwt",
        Credentials(federated_issuer=SPIFFE, federated_subject="spiffe://example.org/ns/pay/*"),
    )
    svid = workload_token(key_server.keys[0], SPIFFE, "spiffe://example.org/ns/pay/api")
    assert (await token_with(harness, svid, client.client_id)).status == 200
    deeper = workload_token(key_server.keys[0], SPIFFE, "spiffe://example.org/ns/pay/api/v2")
    assert (await token_with(harness, deeper, client.client_id)).status == 401


async def test_a_reused_workload_token_is_verified_once(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tokensvc.clientauth import assertion as module

    issuer_key = keypair(kid="sa-key")
    await federate(harness, K8S, jwks=public_jwks(issuer_key))
    client = await register(
        harness,
        "federated_jwt",
        Credentials(federated_issuer=K8S, federated_subject="system:serviceaccount:ns:app"),
    )
    verified = []
    original = module.jwsverify.verified_claims

    def counting(*args: Any, **kwargs: Any) -> Any:
        verified.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module.jwsverify, "verified_claims", counting)
    token = workload_token(issuer_key, K8S, "system:serviceaccount:ns:app")
    for _ in range(5):
        assert (await token_with(harness, token, client.client_id)).status == 200
    assert len(verified) == 1


async def test_a_removed_federation_stops_new_workload_tokens(harness: Harness) -> None:
    issuer_key = keypair(kid="sa-key")
    await federate(harness, K8S, jwks=public_jwks(issuer_key))
    client = await register(
        harness,
        "federated_jwt",
        Credentials(federated_issuer=K8S, federated_subject="system:serviceaccount:ns:app"),
    )
    used = workload_token(issuer_key, K8S, "system:serviceaccount:ns:app")
    assert (await token_with(harness, used, client.client_id)).status == 200
    assert await harness.stores.federations.remove(K8S)
    harness.clock.advance(31)  # past the 30 s a replica keeps a federation's record
    fresh = workload_token(issuer_key, K8S, "system:serviceaccount:ns:app")
    for token in (fresh, used):  # a token verified before is refused too
        reply = await token_with(harness, token, client.client_id)
        assert reply.status == 401 and reply.body["error"] == "invalid_client"
