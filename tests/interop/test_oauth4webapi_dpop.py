"""DPoP (RFC 9449) with a real third-party client: Node's oauth4webapi (panva, v3;
`node/dpop.mjs`) generates an ES256 key pair, discovers the issuer and makes two
client_credentials grants with proofs from its `DPoP(client, keyPair)` handle, over memory and
real Redis + Postgres, with the service's server nonces off and on. Each token must be
DPoP-bound to the library's key: `token_type` DPoP, `cnf.jkt` the thumbprint the library
computes. With nonces on, the library's first proof has none: the server answers
`use_dpop_nonce` with a `DPoP-Nonce`, the library retries with it, and its second grant
sends the kept nonce straight away.

`./scripts/test` installs `node/node_modules` (`npm ci`) from the committed lock file."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness import Harness
from tests.interop.node_script import run_node
from tests.interop.test_openid_client import claims

NONCES = {"dpop_nonce": True}  # keyed from the harness's internal token, as replicas' are


async def run_dpop(harness: Harness, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`node dpop.mjs ARGS` with the client's credentials in its environment (not on its
    command line, where `ps` shows them): (exit status, stdout, stderr). Tokens it printed
    are remembered, so the log check looks for them too."""
    return await run_node(harness, "dpop.mjs", env, *args)


@pytest.fixture(params=["no nonces", "server nonces"])
def service_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The live service without, then with, server DPoP nonces (TOKENSVC_DPOP_NONCE=1)."""
    return NONCES if request.param == "server nonces" else {}


async def test_oauth4webapi_gets_dpop_bound_tokens(
    live_harness: Harness, service_settings: dict[str, Any]
) -> None:
    h = live_harness
    machine, secret = await h.client(name="dpop machine", grant_types=["client_credentials"])
    assert secret is not None
    env = {"INTEROP_CLIENT_ID": machine.client_id, "INTEROP_CLIENT_SECRET": secret}
    status, out, err = await run_dpop(h, env, "--issuer", h.public_url)
    assert status == 0, f"dpop.mjs exited {status}:\n{err}"
    result: dict[str, Any] = json.loads(out)

    assert result["library"]["name"] == "oauth4webapi"
    assert result["library"]["version"] == "3.8.8"
    assert result["issuer"] == h.public_url
    assert "ES256" in result["dpop_signing_alg_values_supported"]
    nonces = bool(service_settings.get("dpop_nonce"))
    for name in ("first", "second"):
        grant = result[name]
        statuses = [r["status"] for r in grant["http"]]
        # the library's first proof cannot know the nonce: one use_dpop_nonce, one retry
        assert statuses == ([400, 200] if nonces and name == "first" else [200]), grant["http"]
        if nonces:
            assert all(r["dpop_nonce"] for r in grant["http"])  # every answer has the next
            if name == "first":
                assert grant["http"][0]["body"]["error"] == "use_dpop_nonce"
        assert grant["http"][-1]["body"]["token_type"] == "DPoP"  # on the wire
        response = grant["response"]
        assert response["token_type"] == "dpop"  # the library lower-cases it
        token = response["access_token"]
        assert claims(token)["cnf"] == {"jkt": result["thumbprint"]}
        await h.verify(token, typ="at+jwt", client_id=machine.client_id)
    assert (
        result["first"]["response"]["access_token"] != result["second"]["response"]["access_token"]
    )
