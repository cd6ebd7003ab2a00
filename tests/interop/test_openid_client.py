"""A real third-party client against a running token service: Node's openid-client (panva, v6;
`node/exchange.mjs`) discovers the issuer, gets a client_credentials token for a resource
(RFC 8707), exchanges a person's access token for one meant for that resource (RFC 8693) and
asks for a transaction token, over memory and real Redis + Postgres.

`./scripts/test` installs `node/node_modules` (`npm ci`) from the committed lock file."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import pytest

from tests.harness import Harness
from tests.interop.node_script import run_node
from tokensvc.grants.token_exchange import ACCESS_TOKEN, GRANT_TYPE, TXN_TOKEN
from tokensvc.models import Client
from tokensvc.registration import new_resource

ORDERS = "https://orders.example.com"


def claims(token: str, part: int = 1) -> dict[str, Any]:
    """A JWT's payload (part 1) or header (part 0), unverified: what the client sees."""
    segment = token.split(".")[part]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return decoded


@dataclass
class Setup:
    """The registrations of a test and the environment that hands their credentials (and the
    person's access token) to exchange.mjs."""

    machine: Client
    gateway: Client
    person_sub: str
    env: dict[str, str]


@pytest.fixture
async def setup(live_harness: Harness) -> Setup:
    h = live_harness
    assert await h.stores.resources.add(
        new_resource(identifier=ORDERS, scopes=["orders:read", "orders:write"], name="Orders")
    )
    machine, machine_secret = await h.client(
        name="checkout",
        grant_types=["client_credentials"],
        scope_list=["orders:read"],
        resources=[ORDERS],
    )
    gateway, gateway_secret = await h.client(
        name="gateway", grant_types=[GRANT_TYPE], scope_list=["api:read"], resources=[ORDERS]
    )
    assert machine_secret is not None and gateway_secret is not None

    # A person's access token for the issuer (a web client's code exchange).
    web, web_secret = await h.client(scope_list=["openid orders:read profile email"])
    code, verifier = await h.mint_code(web, scope="openid orders:read")
    person = await h.exchange(web, web_secret, code, verifier)
    assert person.status == 200, person.body
    subject = person.body["access_token"]
    env = {
        "INTEROP_MACHINE_CLIENT_ID": machine.client_id,
        "INTEROP_MACHINE_CLIENT_SECRET": machine_secret,
        "INTEROP_EXCHANGER_CLIENT_ID": gateway.client_id,
        "INTEROP_EXCHANGER_CLIENT_SECRET": gateway_secret,
        "INTEROP_SUBJECT_TOKEN": subject,
    }
    return Setup(machine, gateway, claims(subject)["sub"], env)


async def run_exchange(harness: Harness, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`node exchange.mjs ARGS` with the credentials in its environment: (exit status, stdout,
    stderr). Tokens it printed are remembered, so the log check looks for them too."""
    return await run_node(harness, "exchange.mjs", env, *args)


async def test_openid_client_gets_a_resource_token_exchanges_and_gets_a_txn_token(
    live_harness: Harness, setup: Setup
) -> None:
    h, machine, gateway, person_sub = live_harness, setup.machine, setup.gateway, setup.person_sub
    status, out, err = await run_exchange(
        h,
        setup.env,
        "--issuer",
        h.public_url,
        "--resource",
        ORDERS,
        "--scope",
        "orders:read",
        "--txn",
    )
    assert status == 0, f"exchange.mjs exited {status}:\n{err}"
    result: dict[str, Any] = json.loads(out)

    assert result["library"]["name"] == "openid-client"
    assert result["library"]["version"].startswith("6.")
    assert result["issuer"] == h.settings.issuer == h.public_url
    assert GRANT_TYPE in result["grant_types_supported"]

    # client_credentials with `resource`: a token for the API, with the client's scope of it.
    cc = result["client_credentials"]
    assert [r["status"] for r in cc["http"]] == [200]
    token = cc["response"]["access_token"]
    assert claims(token, 0)["typ"] == "at+jwt"
    assert claims(token)["aud"] == ORDERS and claims(token)["sub"] == machine.client_id
    assert cc["response"]["scope"] == "orders:read"
    await h.verify(token, typ="at+jwt", aud=ORDERS, client_id=machine.client_id)

    # The exchange: the person's token for the API, the exchanging client as the actor.
    ex = result["token_exchange"]
    assert [r["status"] for r in ex["http"]] == [200]
    wire = ex["http"][0]["body"]
    assert wire["issued_token_type"] == ACCESS_TOKEN and wire["token_type"] == "Bearer"
    response = ex["response"]
    assert response["issued_token_type"] == ACCESS_TOKEN
    assert response["token_type"] == "bearer"  # the library lower-cases it (oauth4webapi)
    assert response["scope"] == "orders:read" and "refresh_token" not in response
    exchanged = claims(response["access_token"])
    assert exchanged["aud"] == ORDERS and exchanged["sub"] == person_sub
    assert exchanged["act"] == {"sub": gateway.client_id}
    assert exchanged["client_id"] == gateway.client_id and exchanged["scope"] == "orders:read"
    await h.verify(response["access_token"], typ="at+jwt", aud=ORDERS, sub=person_sub)

    # The transaction token: N_A, which openid-client accepts for a token exchange only.
    txn = result["txn_token"]
    assert [r["status"] for r in txn["http"]] == [200]
    assert txn["http"][0]["body"]["token_type"] == "N_A"
    assert txn["response"]["issued_token_type"] == TXN_TOKEN
    assert txn["response"]["token_type"] == "n_a"
    txn_token = txn["response"]["access_token"]
    header, payload = claims(txn_token, 0), claims(txn_token)
    assert header["typ"] == "txntoken+jwt"
    assert payload["aud"] == h.public_url and payload["sub"] == person_sub
    assert payload["req_wl"] == gateway.client_id and payload["scope"] == "orders:read"
    assert payload["rctx"] == {"req_ip": "198.51.100.7"}
    assert payload["tctx"] == {"action": "checkout"}


async def test_a_refusal_is_the_librarys_error_and_a_failing_exit(
    live_harness: Harness, setup: Setup
) -> None:
    """orders:write is beyond the person's token: the server's RFC 6749 §5.2 answer reaches
    the library as its ResponseBodyError, and the script fails with it."""
    status, out, err = await run_exchange(
        live_harness,
        setup.env,
        "--issuer",
        live_harness.public_url,
        "--resource",
        ORDERS,
        "--scope",
        "orders:write",
    )
    assert status == 1 and out == ""
    report = json.loads(err.strip().splitlines()[-1])
    assert report["error"]["name"] == "ResponseBodyError"
    assert report["error"]["error"] == "invalid_scope" and report["error"]["status"] == 400
    assert [r["status"] for r in report["http"]] == [200, 400]  # client_credentials passed
