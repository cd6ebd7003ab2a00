"""Token exchange (RFC 8693) and transaction tokens end to end, over memory and real Redis +
Postgres: a person's access token and a workload's platform token exchanged for the next hop,
delegation chains, scope and lifetime bounds, revocation, and every refusal (never a 5xx)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.harness import Harness
from tests.integration.conftest import ServiceFactory
from tests.jose import keypair, public_jwks, workload_token
from tokensvc.grants.token_exchange import ACCESS_TOKEN, GRANT_TYPE, JWT, TXN_TOKEN
from tokensvc.models import Client, Credentials
from tokensvc.registration import new_client, new_federation, new_resource

ORDERS = "https://orders.example.com"
BILLING = "https://billing.example.com"
K8S = "https://kubernetes.default.svc.cluster.local"
PERSON_SCOPE = "openid orders:read orders:write billing:read"


@pytest.fixture
async def harness(make_harness: ServiceFactory) -> Harness:
    h: Harness = await make_harness()
    for identifier, scope in (
        (ORDERS, ["orders:read", "orders:write"]),
        (BILLING, ["billing:read"]),
    ):
        assert await h.stores.resources.add(new_resource(identifier=identifier, scopes=scope))
    return h


async def exchanger(h: Harness, name: str = "gateway", **kwargs: Any) -> tuple[Client, str]:
    kwargs.setdefault("resources", (ORDERS, BILLING))
    client, secret = await h.client(
        name=name, grant_types=[GRANT_TYPE], scope_list=["api:read"], **kwargs
    )
    assert secret is not None
    return client, secret


async def person_token(h: Harness, scope: str = PERSON_SCOPE) -> tuple[str, dict[str, Any]]:
    """A person's access token for the issuer (a web client's code exchange)."""
    web, secret = await h.client(scope_list=[PERSON_SCOPE + " profile email"])
    code, verifier = await h.mint_code(web, scope=scope)
    reply = await h.exchange(web, secret, code, verifier)
    assert reply.status == 200, reply.body
    return reply.body["access_token"], reply.body


async def exchange(h: Harness, client: Client, secret: str, **params: Any) -> Any:
    pairs: list[tuple[str, str]] = [("grant_type", GRANT_TYPE)]
    for name, value in params.items():
        pairs += [(name, v) for v in value] if isinstance(value, list) else [(name, value)]
    return await h.post_token(pairs, basic=(client.client_id, secret))


async def exchange_subject(
    h: Harness, client: Client, secret: str, subject: str, **params: Any
) -> Any:
    """An exchange of our access token `subject` (the common case of these tests)."""
    return await exchange(
        h, client, secret, subject_token=subject, subject_token_type=ACCESS_TOKEN, **params
    )


async def test_a_persons_token_is_exchanged_for_a_resource_with_the_exchanger_as_actor(
    harness: Harness,
) -> None:
    gateway, secret = await exchanger(harness)
    subject, _ = await person_token(harness)
    subject_claims = await harness.verify(subject, typ="at+jwt")
    reply = await exchange_subject(
        harness,
        gateway,
        secret,
        subject,
        resource=ORDERS,
        scope="orders:read",
    )
    assert reply.status == 200, reply.body
    body = reply.body
    assert body["issued_token_type"] == ACCESS_TOKEN and body["token_type"] == "Bearer"
    assert "refresh_token" not in body and body["scope"] == "orders:read"
    claims = await harness.verify(body["access_token"], typ="at+jwt")
    assert claims["sub"] == subject_claims["sub"] and claims["client_id"] == gateway.client_id
    assert claims["aud"] == ORDERS and claims["act"] == {"sub": gateway.client_id}
    assert claims["exp"] <= subject_claims["exp"]
    assert claims["gid"] == subject_claims["gid"]  # the person's grant: revocable with it


async def test_without_scope_the_exchange_keeps_what_the_subject_has_for_the_resource(
    harness: Harness,
) -> None:
    gateway, secret = await exchanger(harness)
    subject, _ = await person_token(harness)
    reply = await exchange_subject(
        harness,
        gateway,
        secret,
        subject,
        audience=ORDERS,
    )
    assert reply.status == 200 and reply.body["scope"] == "openid orders:read orders:write"


async def test_each_hop_nests_the_previous_actor(harness: Harness) -> None:
    gateway, gw_secret = await exchanger(harness)
    orders, orders_secret = await exchanger(harness, "orders")
    subject, _ = await person_token(harness)
    first = await exchange_subject(
        harness,
        gateway,
        gw_secret,
        subject,
        resource=ORDERS,
    )
    second = await exchange(
        harness,
        orders,
        orders_secret,
        subject_token=first.body["access_token"],
        subject_token_type=ACCESS_TOKEN,
        resource=ORDERS,
        scope="orders:read",
    )
    assert second.status == 200, second.body
    claims = await harness.verify(second.body["access_token"], typ="at+jwt")
    assert claims["act"] == {"sub": orders.client_id, "act": {"sub": gateway.client_id}}
    assert claims["client_id"] == orders.client_id


async def test_an_actor_token_names_the_actor(harness: Harness) -> None:
    gateway, secret = await exchanger(harness)
    robot, robot_secret = await harness.client(grant_types=["client_credentials"])
    assert robot_secret is not None
    actor = (await harness.token(robot, robot_secret, grant_type="client_credentials")).body
    subject, _ = await person_token(harness)
    reply = await exchange_subject(
        harness,
        gateway,
        secret,
        subject,
        actor_token=actor["access_token"],
        actor_token_type=ACCESS_TOKEN,
        resource=BILLING,
    )
    assert reply.status == 200, reply.body
    claims = await harness.verify(reply.body["access_token"], typ="at+jwt")
    assert claims["act"] == {"sub": robot.client_id} and claims["scope"] == "openid billing:read"


async def test_introspection_shows_the_actor_and_a_revoked_grant_ends_the_exchanged_token(
    harness: Harness,
) -> None:
    gateway, secret = await exchanger(harness)
    subject, _ = await person_token(harness)
    # For the issuer (no resource): usable at /userinfo until the person's grant is revoked.
    reply = await exchange_subject(
        harness,
        gateway,
        secret,
        subject,
        scope="openid",
    )
    token = reply.body["access_token"]
    seen = await harness.post_token(
        {"token": token}, basic=(gateway.client_id, secret), path="/introspect"
    )
    assert seen.body["active"] is True and seen.body["act"] == {"sub": gateway.client_id}
    assert await userinfo_status(harness, token) == 200
    gid = (await harness.verify(token, typ="at+jwt"))["gid"]
    await harness.stores.grants.revoke_grant(gid, harness.clock())
    seen = await harness.post_token(
        {"token": token}, basic=(gateway.client_id, secret), path="/introspect"
    )
    assert seen.body == {"active": False}
    assert await userinfo_status(harness, token) == 401
    again = await exchange_subject(harness, gateway, secret, subject)
    assert again.status == 400 and again.body["error"] == "invalid_request"


async def userinfo_status(h: Harness, token: str) -> int:
    async with h.http.get(
        h.public_url + "/userinfo", headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        return resp.status


async def test_the_lifetime_never_outlasts_the_subject(harness: Harness) -> None:
    gateway, secret = await exchanger(harness)
    subject, _ = await person_token(harness)
    exp = (await harness.verify(subject, typ="at+jwt"))["exp"]
    harness.clock.advance(exp - harness.clock() - 90)  # 90 s of the subject's life left
    reply = await exchange_subject(
        harness,
        gateway,
        secret,
        subject,
        resource=ORDERS,
    )
    assert reply.status == 200 and reply.body["expires_in"] <= 90


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({}, "invalid_request"),
        ({"subject_token_type": ACCESS_TOKEN}, "invalid_request"),
        ({"subject_token": "x.y.z", "subject_token_type": ACCESS_TOKEN}, "invalid_request"),
        ({"subject_token": "SUBJECT", "subject_token_type": "urn:x:unknown"}, "invalid_request"),
        ({"subject_token": "SUBJECT", "subject_token_type": JWT}, "invalid_request"),
        (
            {"subject_token": "SUBJECT", "subject_token_type": ACCESS_TOKEN, "actor_token": "a"},
            "invalid_request",
        ),
        (
            {
                "subject_token": "SUBJECT",
                "subject_token_type": ACCESS_TOKEN,
                "requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token",
            },
            "invalid_request",
        ),
        (
            {
                "subject_token": "SUBJECT",
                "subject_token_type": ACCESS_TOKEN,
                "resource": "https://unknown.example.com",
            },
            "invalid_target",
        ),
        (
            {
                "subject_token": "SUBJECT",
                "subject_token_type": ACCESS_TOKEN,
                "resource": ORDERS,
                "scope": "billing:read",
            },
            "invalid_scope",
        ),
        (
            {
                "subject_token": "SUBJECT",
                "subject_token_type": ACCESS_TOKEN,
                "resource": ORDERS,
                "scope": "orders:admin",
            },
            "invalid_scope",
        ),
    ],
)
async def test_refusals(harness: Harness, params: dict[str, str], error: str) -> None:
    gateway, secret = await exchanger(harness)
    subject, _ = await person_token(harness, scope="openid orders:read")
    params = {k: subject if v == "SUBJECT" else v for k, v in params.items()}
    reply = await exchange(harness, gateway, secret, **params)
    assert reply.status == 400 and reply.body["error"] == error, reply.body


async def test_a_client_without_the_grant_is_unauthorized(harness: Harness) -> None:
    other, secret = await harness.client(grant_types=["client_credentials"], resources=(ORDERS,))
    assert secret is not None
    subject, _ = await person_token(harness)
    reply = await exchange_subject(harness, other, secret, subject)
    assert reply.status == 400 and reply.body["error"] == "unauthorized_client"


async def test_a_resource_not_the_exchangers_is_invalid_target(harness: Harness) -> None:
    gateway, secret = await exchanger(harness, resources=(ORDERS,))
    subject, _ = await person_token(harness)
    reply = await exchange_subject(
        harness,
        gateway,
        secret,
        subject,
        resource=BILLING,
    )
    assert reply.status == 400 and reply.body["error"] == "invalid_target"


# ------------------------------------------------------------------ federation subject tokens


async def workload(h: Harness) -> tuple[Any, Client]:
    key = keypair(kid="sa-key")
    assert await h.stores.federations.add(new_federation(issuer=K8S, jwks=public_jwks(key)))
    client, _ = new_client(
        name="payments",
        grant_types=["client_credentials"],
        scope_list=["orders:read", "api:read"],
        auth_method="federated_jwt",
        credentials=Credentials(
            federated_issuer=K8S, federated_subject="system:serviceaccount:payments:*"
        ),
        resources=(ORDERS,),
    )
    assert await h.stores.clients.add(client)
    return key, client


async def test_a_workload_token_is_a_subject_when_it_names_a_registered_workload(
    harness: Harness,
) -> None:
    key, _ = await workload(harness)
    gateway, secret = await exchanger(harness)
    token = workload_token(key, K8S, "system:serviceaccount:payments:api")
    reply = await exchange(
        harness, gateway, secret, subject_token=token, subject_token_type=JWT, resource=ORDERS
    )
    assert reply.status == 200, reply.body
    claims = await harness.verify(reply.body["access_token"], typ="at+jwt")
    assert claims["sub"] == "system:serviceaccount:payments:api"
    assert claims["scope"] == "orders:read" and claims["act"] == {"sub": gateway.client_id}
    for bad in (
        workload_token(key, K8S, "system:serviceaccount:unknown:api"),  # no such workload
        workload_token(keypair(kid="sa-key"), K8S, "system:serviceaccount:payments:api"),
        workload_token(key, K8S, "system:serviceaccount:payments:api", aud=["https://x"]),
        workload_token(key, "https://rogue.example", "system:serviceaccount:payments:api"),
        workload_token(key, K8S, "system:serviceaccount:payments:api", exp=int(time.time()) - 60),
    ):
        reply = await exchange(
            harness, gateway, secret, subject_token=bad, subject_token_type=JWT, resource=ORDERS
        )
        assert reply.status == 400 and reply.body["error"] == "invalid_request", reply.body


# ------------------------------------------------------------------ transaction tokens


async def txn(h: Harness, client: Client, secret: str, subject: str, **params: Any) -> Any:
    params.setdefault("audience", h.settings.issuer)
    return await exchange(
        h,
        client,
        secret,
        subject_token=subject,
        subject_token_type=ACCESS_TOKEN,
        requested_token_type=TXN_TOKEN,
        **params,
    )


async def test_a_transaction_token_carries_the_call_context(harness: Harness) -> None:
    gateway, secret = await exchanger(harness)
    subject, _ = await person_token(harness)
    sub = (await harness.verify(subject, typ="at+jwt"))["sub"]
    reply = await txn(
        harness,
        gateway,
        secret,
        subject,
        scope="orders:read",
        request_context='{"req_ip": "198.51.100.7", "authn": "pwd"}',
        request_details='{"action": "checkout", "amount": 42}',
    )
    assert reply.status == 200, reply.body
    body = reply.body
    assert body["issued_token_type"] == TXN_TOKEN and body["token_type"] == "N_A"
    assert body["expires_in"] <= 300 and body["scope"] == "orders:read"
    claims = await harness.verify(body["access_token"], typ="txntoken+jwt")
    assert claims["aud"] == harness.settings.issuer and claims["sub"] == sub
    assert claims["req_wl"] == gateway.client_id and claims["scope"] == "orders:read"
    assert claims["rctx"] == {"req_ip": "198.51.100.7", "authn": "pwd"}
    assert claims["tctx"] == {"action": "checkout", "amount": 42}
    assert claims["exp"] - claims["iat"] <= 300
    other = await txn(harness, gateway, secret, subject)
    assert (await harness.verify(other.body["access_token"], typ="txntoken+jwt"))["txn"] != claims[
        "txn"
    ]
    # a transaction token is not an access token: it cannot be introspected as one
    seen = await harness.post_token(
        {"token": body["access_token"]}, basic=(gateway.client_id, secret), path="/introspect"
    )
    assert seen.body == {"active": False}


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"audience": "https://another-domain.example"}, "invalid_target"),
        ({"resource": ORDERS}, "invalid_target"),
        ({"request_context": "not json"}, "invalid_request"),
        ({"request_context": "[1, 2]"}, "invalid_request"),
        ({"request_details": "{" + '"a": 1, ' * 2000 + '"b": 2}'}, "invalid_request"),
        ({"scope": "billing:admin"}, "invalid_scope"),
    ],
)
async def test_transaction_token_refusals(
    harness: Harness, params: dict[str, str], error: str
) -> None:
    gateway, secret = await exchanger(harness)
    subject, _ = await person_token(harness)
    reply = await txn(harness, gateway, secret, subject, **params)
    assert reply.status == 400 and reply.body["error"] == error, reply.body


async def test_discovery_lists_the_exchange_grant(harness: Harness) -> None:
    metadata = (await harness.get("/.well-known/openid-configuration")).body
    assert GRANT_TYPE in metadata["grant_types_supported"]
